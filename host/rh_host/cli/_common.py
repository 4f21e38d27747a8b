"""What every command shares: one-line errors and exit codes."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``rh-host: error: <message>`` on one line to stderr and exit."""
    first_line = " ".join(str(message).split("\n"))
    click.echo(f"rh-host: error: {first_line}", err=True)
    sys.exit(code)
