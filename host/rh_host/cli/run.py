"""``rh-host run``: run plugins over one batch file on this machine, no server."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click
import msgspec

from rh_host.batchfile import read_results
from rh_host.cli._common import (
    EXIT_FAILED,
    clamped_to,
    default_quotas,
    egress_options,
    exit_for_outcome,
    fail,
    isolation_option,
    json_object_option,
    quota_option,
    sandbox_uids_option,
)
from rh_host.cli.render import render_outcome
from rh_host.errors import HostError
from rh_host.manifest import Plugin, load_plugin
from rh_host.pipeline import Pipeline, RunEvent
from rh_sandbox import EgressSettings, SandboxError, UidRange, make_dispatcher

__all__ = ["run"]

_PROGRESS_MIN_RESULTS = 10_000


def _load_plugins(dirs: tuple[str, ...]) -> list[Plugin]:
    plugins: list[Plugin] = []
    seen: dict[str, str] = {}
    for directory in dirs:
        plugin = load_plugin(directory)
        if plugin.name in seen:
            fail(f"{directory}: plugin name {plugin.name!r} is also used by {seen[plugin.name]}")
        seen[plugin.name] = directory
        plugins.append(plugin)
    return plugins


def _default_batch_id(results_path: str) -> str:
    if results_path == "-":
        return "stdin"
    digest = hashlib.sha256(str(Path(results_path).resolve()).encode()).hexdigest()[:8]
    return f"{Path(results_path).stem}-{digest}"


def _progress_printer(event: RunEvent) -> None:
    if event.run is None:
        click.echo(f"[{event.index}/{event.total}] {event.plugin} (priority {event.priority}) started", err=True)
    else:
        click.echo(
            f"[{event.index}/{event.total}] {event.plugin}: {event.run.status.value} "
            f"in {event.run.usage.wall_ms:.0f} ms",
            err=True,
        )


@click.command()
@click.argument("results", metavar="RESULTS")
@click.option("--plugin", "plugin_dirs", multiple=True, required=True, metavar="DIR", help="A plugin directory.")
@click.option("--metadata", help="Batch metadata as a JSON object.")
@click.option("--batch-id", help="Batch id (default: derived from the file name).")
@click.option("--json", "as_json", is_flag=True, help="Print the batch outcome as one JSON document.")
@click.option("--logs", "show_logs", is_flag=True, help="Show every handler's log records.")
@isolation_option
@sandbox_uids_option
@egress_options
@quota_option("A ceiling for these runs instead of the operator's default", envvar="RH_DEFAULT_QUOTAS")
@click.option("--parallel", default=2, show_default=True, type=click.IntRange(1, 64), help="Concurrent runs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def run(
    results: str,
    plugin_dirs: tuple[str, ...],
    metadata: str | None,
    batch_id: str | None,
    as_json: bool,
    show_logs: bool,
    isolation: str,
    sandbox_uids: UidRange | None,
    egress: EgressSettings,
    quotas: dict[str, str],
    parallel: int,
    quiet: bool,
) -> None:
    """Run plugins over RESULTS, a batch output JSONL file (or - for stdin), and print the outcome.

    Exit status: 0 when every enabled handler succeeded, 1 when one did not or the host could not run
    one (host_error, named on stderr), 2 for bad input.
    """
    meta = json_object_option("--metadata", metadata)
    ceilings = default_quotas(quotas)
    try:
        plugins = _load_plugins(plugin_dirs)
        lines = read_results(results, sys.stdin.buffer)
    except HostError as exc:
        fail(str(exc))
    show_progress = not quiet and (sys.stderr.isatty() or len(lines) >= _PROGRESS_MIN_RESULTS)
    if show_progress:
        click.echo(f"{len(lines)} results, {len(plugins)} plugins", err=True)
    try:
        with make_dispatcher(isolation, egress=egress, sandbox_uids=sandbox_uids) as dispatcher:
            pipeline = Pipeline(
                dispatcher, max_parallel=parallel, progress=_progress_printer if show_progress else None
            )
            outcome = pipeline.run(
                batch_id or _default_batch_id(results), lines, meta, plugins, limits_for=clamped_to(ceilings)
            )
    except SandboxError as exc:
        fail(str(exc), code=EXIT_FAILED)
    if as_json:
        click.echo(msgspec.json.encode(outcome).decode())
    else:
        click.echo(render_outcome(outcome, show_logs=show_logs))
    exit_for_outcome(outcome)
