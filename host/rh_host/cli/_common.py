"""What every command shares: one-line errors and exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from rh_host.outcome import BatchOutcome
from rh_sandbox import DEFAULT_UIDS, ISOLATION_CHOICES, EgressSettings, GrantError, OperatorPolicy, UidRange

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
