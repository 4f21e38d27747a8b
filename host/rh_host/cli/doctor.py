"""``rh-host doctor``: what isolation this machine offers and which level the host will use."""

from __future__ import annotations

import json

import click

from rh_host.cli._common import sandbox_uids_option
from rh_sandbox import SandboxUids, UidRange, format_probe, probe, probe_dict


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the probe as JSON.")
@click.option(
    "--isolation",
    type=click.Choice(["auto", "basic", "strict"]),
    default="auto",
    show_default=True,
    help="Exit non-zero when this level cannot be provided.",
)
@sandbox_uids_option
def doctor(as_json: bool, isolation: str, sandbox_uids: UidRange | None) -> None:
    """Print what this machine offers for isolation (bwrap, namespaces, cgroups, seccomp, Landlock)."""
    p = probe(SandboxUids.over(sandbox_uids))
    click.echo(json.dumps(probe_dict(p), indent=2) if as_json else format_probe(p))
    if isolation == "strict" and not p.strict_sandbox_works:
        raise click.ClickException(f"isolation 'strict' is unavailable: {p.strict_problem}")
    if isolation != "basic" and p.strict_sandbox_works and p.sandbox_uid_conflicts:
        raise click.ClickException(f"the sandbox uid range {p.sandbox_uids} overlaps users or subordinate ranges")
