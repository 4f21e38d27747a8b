"""What every command shares: one-line errors and exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click
import msgspec

from rh_host.manifest import Plugin
from rh_host.outcome import BatchOutcome
from rh_sandbox import DEFAULT_UIDS, ISOLATION_CHOICES, EgressSettings, GrantError, Limits, OperatorPolicy, UidRange

if TYPE_CHECKING:
    from rh_host.service.settings import Quotas

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``rh-host: error: <message>`` on one line to stderr and exit."""
    first_line = " ".join(str(message).split("\n"))
    click.echo(f"rh-host: error: {first_line}", err=True)
    sys.exit(code)


def exit_for_outcome(outcome: BatchOutcome) -> NoReturn:
    """Exit 0 on success, else 1; runs the host could not carry out are named on stderr as its fault."""
    faults = outcome.host_errors()
    if faults:
        names = ", ".join(f"{r.name} ({r.error})" for r in faults)
        fail(f"host error, not the handlers' fault: {len(faults)} handler(s) could not run: {names}", EXIT_FAILED)
    sys.exit(EXIT_OK if outcome.success else EXIT_FAILED)


def default_quotas(overrides: dict[str, str]) -> Quotas:
    """The operator's default quotas: the built-in ones with ``--quota`` overrides (exit 2 if invalid)."""
    from rh_host.service.settings import Quotas  # the service package: only when a command needs it

    try:
        quotas = msgspec.convert(overrides, Quotas, strict=False)
    except msgspec.ValidationError as exc:
        fail(f"--quota: {str(exc).replace('`$.', '`')}")
    if problems := quotas.problems():
        fail(f"--quota: {problems[0]}")
    return quotas


def clamped_to(quotas: Quotas) -> Callable[[Plugin], Limits]:
    """A run without a tenant gets what a tenant with these quotas would get."""
    from rh_host.service.limits import clamp_limits

    return lambda plugin: clamp_limits(plugin.manifest.limits, quotas).effective


def json_object_option(option: str, text: str | None) -> dict[str, object]:
    """Parse an option whose value must be a JSON object (``--metadata``, ``--config``)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{option}: invalid JSON: {exc}")
    if not isinstance(value, dict):
        fail(f"{option}: must be a JSON object, got {type(value).__name__}")
    return value


def _quota_pairs(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        field, sep, number = value.partition("=")
        if not sep or not field.strip() or not number.strip():
            raise click.BadParameter(f"{value!r}: expected FIELD=VALUE, e.g. max_processes=32")
        pairs[field.strip()] = number.strip()
    return pairs


def quota_option(help_text: str, envvar: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--quota FIELD=VALUE`` (repeatable), handed to the command as ``quotas``: a dict of strings."""
    return click.option(
        "--quota",
        "quotas",
        multiple=True,
        metavar="FIELD=VALUE",
        envvar=envvar,
        callback=_quota_pairs,
        help=f"{help_text} (docs/operator-guide.md, 'Limits and quotas'), e.g. max_processes=32; repeatable.",
    )


isolation_option = click.option(
    "--isolation",
    type=click.Choice(ISOLATION_CHOICES),
    default="auto",
    show_default=True,
    envvar="RH_ISOLATION",
    help="Minimum isolation; 'strict' refuses to run rather than degrade.",
)


def _uid_range(_ctx: click.Context, _param: click.Parameter, value: str | None) -> UidRange | None:
    try:
        return UidRange.parse(value) if value else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


sandbox_uids_option = click.option(
    "--sandbox-uids",
    "sandbox_uids",
    metavar="FIRST-LAST",
    envvar="RH_SANDBOX_UIDS",
    callback=_uid_range,
    help=f"The uids tenants' strict sandboxes run as, one per tenant (default {DEFAULT_UIDS}).",
)


def egress_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--allow-host`` / ``--allow-internal``: the operator's cap on plugins' network grants, handed to
    the command as one ``egress`` argument (an :class:`EgressSettings`). Nothing allowed by default."""

    @click.option(
        "--allow-host",
        "allow_hosts",
        multiple=True,
        metavar="PATTERN",
        envvar="RH_ALLOW_HOSTS",
        help="A network grant plugins may hold: host:port, *.domain:port, host:* (repeatable; none by default).",
    )
    @click.option(
        "--allow-internal",
        "allow_internal",
        multiple=True,
        metavar="ADDRESS:PORT",
        envvar="RH_ALLOW_INTERNAL",
        help="A private/loopback address:port (or address:*) granted hosts may resolve to (repeatable).",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, allow_hosts: tuple[str, ...], allow_internal: tuple[str, ...], **kwargs: Any) -> Any:
        try:
            policy = OperatorPolicy(allowed=allow_hosts, internal_allowed=allow_internal)
        except GrantError as exc:
            fail(str(exc))
        return command(*args, egress=EgressSettings(policy=policy), **kwargs)

    return wrapper
