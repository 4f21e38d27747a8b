"""Tenant routes: plugin upload, versions, activation, config and secrets."""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from anyio import to_thread
from litestar import Request, Response, Router, delete, get, post, put
from litestar.di import Provide
from litestar.params import Parameter

from rh_host.manifest import MANIFEST_NAME, Manifest
from rh_host.service.auth import Caller, service_of, tenant_dependency
from rh_host.service.errors import BadRequest, PayloadTooLarge, QuotaExceeded, UploadRejected
from rh_host.service.models import ConfigUpdate, ConfigView, PluginView
from rh_host.service.openapi_docs import PluginArchiveOperation, error_responses
from rh_host.service.plugin_checks import check_config, check_upload
from rh_host.service.service import Service
from rh_host.service.settings import Quotas
from rh_host.service.vault import masked
from rh_host.service.views import plugin_view
from rh_sandbox import GrantError, check_grants, parse_grants

__all__ = ["plugins_router"]

_decode_manifest = msgspec.json.Decoder(Manifest).decode


async def _view(request: Request, caller: Caller, name: str) -> PluginView:
    plugin, versions = await to_thread.run_sync(service_of(request).store.versions, caller.tenant_id, name)
    return plugin_view(plugin, list(versions), caller.quotas, with_versions=True)


def _store_upload(
    service: Service, tenant_id: str, quotas: Quotas, body: bytes, activate: bool
) -> tuple[Manifest, bool]:
    """Unpack, check and record an upload; a refused one (archive, grants, a handler that does not
    load, or quota) leaves no files."""
    check_module = functools.partial(service.check_module, tenant_id=tenant_id)
    upload = service.artifacts.upload(
        body, service.settings.upload, check_module, referenced=service.store.digest_referenced
    )
    with upload as artifact:
        manifest = artifact.manifest
        try:
            check_grants(parse_grants(manifest.allowed_hosts), service.settings.egress.policy)
        except GrantError as exc:
            raise UploadRejected(f"{MANIFEST_NAME}: field `allowed_hosts`: {exc}") from None
        if manifest.runtime == "python":  # a WASM module was checked as it was unpacked
            check_upload(service, artifact.directory, tenant_id, quotas)
        _version, created = service.store.add_version(
            tenant_id,
            manifest.name,
            manifest.version,
            artifact.digest,
            msgspec.json.encode(manifest).decode(),
            size_bytes=artifact.size_bytes,
            activate=activate,
            archive=body,
        )
    return manifest, created


@post(
    "/",
    operation_class=PluginArchiveOperation,
    responses=error_responses(400, 401, 403, 413, 429),
    summary="Upload a plugin archive (zip or tar.gz of a plugin directory): a new version of that plugin",
    description=(
        "The body is the archive itself. 201 for a new version, 200 when this exact archive is stored;"
        " 429/413 quota_exceeded past max_plugins, max_versions or max_artifact_mb (nothing is stored)."
    ),
)
async def upload(request: Request, caller: Caller, activate: bool = True) -> Response[PluginView]:
    service = service_of(request)
    body = await request.body()
    try:
        manifest, created = await to_thread.run_sync(
            _store_upload, service, caller.tenant_id, caller.quotas, body, activate
        )
    except (UploadRejected, PayloadTooLarge, QuotaExceeded):
        service.metrics.uploads_rejected.inc()
        raise
    return Response(await _view(request, caller, manifest.name), status_code=201 if created else 200)


@get("/", summary="List plugins with their active version")
async def list_plugins(request: Request, caller: Caller) -> list[PluginView]:
    store = service_of(request).store
    plugins = await to_thread.run_sync(store.list_plugins, caller.tenant_id)
    versions = await to_thread.run_sync(store.tenant_versions, caller.tenant_id)
    return [
        plugin_view(p, [v for v in versions if v.plugin_id == p.id], caller.quotas, with_versions=False)
        for p in plugins
    ]


@get("/{name:str}", summary="One plugin, every version, and the limits each would run with")
async def get_plugin(request: Request, caller: Caller, name: str) -> PluginView:
    return await _view(request, caller, name)


@post("/{name:str}/activate", summary="Activate a version (default: the active one) and enable the plugin")
async def activate(
    request: Request, caller: Caller, name: str, version: int | None = Parameter(default=None, ge=1)
) -> PluginView:
    await to_thread.run_sync(service_of(request).store.activate, caller.tenant_id, name, version)
    return await _view(request, caller, name)


@post("/{name:str}/disable", summary="Disable the plugin: new batches do not run it")
async def disable(request: Request, caller: Caller, name: str) -> PluginView:
    await to_thread.run_sync(service_of(request).store.disable, caller.tenant_id, name)
    return await _view(request, caller, name)


@post("/{name:str}/rollback", summary="Activate the version before the active one")
async def rollback(request: Request, caller: Caller, name: str) -> PluginView:
    await to_thread.run_sync(service_of(request).store.rollback, caller.tenant_id, name)
    return await _view(request, caller, name)


@delete("/{name:str}", summary="Delete the plugin and all its versions (their files unless shared)")
async def remove(request: Request, caller: Caller, name: str) -> None:
    service = service_of(request)
    await to_thread.run_sync(service.store.delete_plugin, caller.tenant_id, name)
    await to_thread.run_sync(service.collect_artifacts)


@get("/{name:str}/config", summary="The plugin's config; secret values are masked")
async def get_config(request: Request, caller: Caller, name: str) -> ConfigView:
    service = service_of(request)
    plugin = await to_thread.run_sync(service.store.plugin, caller.tenant_id, name)
    secrets = service.vault.unseal(plugin.sealed_secrets)
    return ConfigView(plugin=name, config=msgspec.json.decode(plugin.config), secrets=masked(secrets))


@put(
    "/{name:str}/config",
    summary="Replace the config; set or remove secrets",
    description=(
        "Keys the manifest lists under `secrets` are stored sealed even when sent in `config`. The active"
        " (Python) version's handler is constructed with the new config first: one that refuses it is a 400"
        " with the handler's error, and nothing is stored."
    ),
)
async def put_config(request: Request, caller: Caller, name: str, data: ConfigUpdate) -> ConfigView:
    service = service_of(request)
    plugin, versions = await to_thread.run_sync(service.store.versions, caller.tenant_id, name)
    declared: set[str] = set()
    for version in versions:
        declared.update(_decode_manifest(version.manifest).secrets)
    config: dict[str, Any] = {k: v for k, v in data.config.items() if k not in declared}
    secrets = service.vault.unseal(plugin.sealed_secrets)
    for key, value in data.config.items():
        if key in declared:
            if not isinstance(value, str):
                raise BadRequest(f"config key {key!r} is a secret and must be a string")
            secrets[key] = value
    for key, value in data.secrets.items():
        if value is None:
            secrets.pop(key, None)
        else:
            secrets[key] = value
    if "priority" in config and not isinstance(config["priority"], int):
        raise BadRequest("config key 'priority' must be an integer")
    if overlap := sorted(set(config) & set(secrets)):
        raise BadRequest(f"config key {overlap[0]!r} is also a secret; remove one of them")
    active = next((v for v in versions if v.seq == plugin.active_seq), None)
    if active is not None and _decode_manifest(active.manifest).runtime == "python":
        directory = str(service.artifacts.path_for(active.digest))
        await to_thread.run_sync(check_config, service, directory, caller.tenant_id, caller.quotas, config, secrets)
    await to_thread.run_sync(service.store.set_config, caller.tenant_id, name, config, service.vault.seal(secrets))
    return ConfigView(plugin=name, config=config, secrets=masked(secrets))


plugins_router = Router(
    path="/v1/plugins",
    route_handlers=[upload, list_plugins, get_plugin, activate, disable, rollback, remove, get_config, put_config],
    dependencies={"caller": Provide(tenant_dependency)},
    tags=["plugins"],
)
