"""What every command shares: one-line errors and exit codes."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click

from rh_host.sandboxes import ISOLATION_CHOICES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``rh-host: error: <message>`` on one line to stderr and exit."""
    first_line = " ".join(str(message).split("\n"))
    click.echo(f"rh-host: error: {first_line}", err=True)
    sys.exit(code)


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
