"""A Python plugin version is checked before it can go live (see :mod:`rh_host.check`): at upload, and
when its config changes, its handler is constructed in the tenant's sandbox with the config and secrets
its runs would get and its limits clamped to the tenant's ceilings.

Only imported, not constructed, while it cannot yet have its config: a new plugin (config is set once the
plugin exists) or one with a declared secret unset, whose ``__init__`` may rightly refuse without it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from rh_host.check import PluginCheckFailed, check_plugin
from rh_host.manifest import load_plugin
from rh_host.service.errors import BadRequest, NotFound, Unavailable, UploadRejected
from rh_host.service.limits import clamp_limits
from rh_host.service.redaction import redact_text
from rh_host.service.settings import Quotas
from rh_sandbox import SandboxError

if TYPE_CHECKING:
    from rh_host.service.service import Service

__all__ = ["check_config", "check_upload"]

_log = logging.getLogger("rh.service.checks")


def check_upload(service: Service, directory: str, tenant_id: str, quotas: Quotas) -> None:
    """An uploaded version, with its plugin's stored config; UploadRejected when it does not load."""
    name = load_plugin(directory).name
    try:
        stored = service.store.plugin(tenant_id, name)
    except NotFound:  # a new plugin: only imported
        _check(service, directory, tenant_id, quotas, {}, {}, construct=False, refusal=UploadRejected)
        return
    config, secrets = msgspec.json.decode(stored.config), service.vault.unseal(stored.sealed_secrets)
    _check(service, directory, tenant_id, quotas, config, secrets, construct=True, refusal=UploadRejected)


def check_config(
    service: Service, directory: str, tenant_id: str, quotas: Quotas, config: dict[str, Any], secrets: dict[str, Any]
) -> None:
    """The active version with a config about to be stored; BadRequest when its handler refuses it."""
    _check(service, directory, tenant_id, quotas, config, secrets, construct=True, refusal=BadRequest)


def _check(
    service: Service,
    directory: str,
    tenant_id: str,
    quotas: Quotas,
    config: dict[str, Any],
    secrets: dict[str, Any],
    *,
    construct: bool,
    refusal: type[BadRequest],
) -> None:
    if service.dispatcher is None:
        raise Unavailable("the service is not running")
    plugin = load_plugin(directory, {**config, **secrets})
    construct = construct and all(name in secrets for name in plugin.manifest.secrets)
    limits = clamp_limits(plugin.manifest.limits, quotas).effective
    try:
        check_plugin(service.dispatcher, plugin, group=tenant_id, limits=limits, construct=construct)
    except PluginCheckFailed as exc:
        raise refusal(redact_text(str(exc), [str(v) for v in secrets.values()])) from None
    except SandboxError as exc:
        _log.error("checking a plugin failed: %s", exc)
        raise Unavailable(f"cannot check the plugin now: {exc}") from None
