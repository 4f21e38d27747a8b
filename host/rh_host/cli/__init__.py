"""The ``rh-host`` command line. Commands only parse and print; the work is done elsewhere.

Exit codes: 0 success, 1 a handler (or the service) did not succeed, 2 bad input.
"""

from __future__ import annotations

import logging

import click

from rh_host.cli.batch import batch
from rh_host.cli.doctor import doctor
from rh_host.cli.plugin import plugin
from rh_host.cli.run import run
from rh_host.cli.serve import serve
from rh_host.cli.status import status
from rh_host.cli.tenant import tenant

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rh-host")
def main() -> None:
    """rh-host: run tenants' batch result handlers, sandboxed."""
    logging.basicConfig(level=logging.WARNING, format="rh-host: %(levelname)s: %(message)s")


main.add_command(run)
main.add_command(serve)
main.add_command(tenant)
main.add_command(plugin)
main.add_command(batch)
main.add_command(doctor)
main.add_command(status)
