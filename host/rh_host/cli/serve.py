"""``rh-host serve``: run the multi-tenant service."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from rh_host.cli._common import (
    EXIT_FAILED,
    default_quotas,
    egress_options,
    fail,
    isolation_option,
    quota_option,
    sandbox_uids_option,
)
from rh_host.errors import HostError
from rh_sandbox import EgressSettings, SandboxError, SandboxUids, UidRange, check_isolation

__all__ = ["serve"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8700, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--data-dir",
    default="./rh-data",
    show_default=True,
    envvar="RH_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Database (SQLite), plugin artifacts, operator token and secret key.",
)
@click.option(
    "--database-url",
    envvar="RH_DATABASE_URL",
    help="postgresql://user@host/db for a shared deployment (default: SQLite in the data dir).",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Batches run at once.")
@click.option(
    "--role",
    type=click.Choice(["all", "api", "worker"]),
    default="all",
    show_default=True,
    envvar="RH_ROLE",
    help="api: accept, store and answer, never run a batch; worker: claim and run batches; all: both.",
)
@click.option(
    "--lease-seconds",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.5),
    envvar="RH_LEASE_SECONDS",
    help="How long a claim outlives its node's last heartbeat before another node takes the batch over.",
)
@click.option(
    "--shutdown-seconds",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    envvar="RH_SHUTDOWN_SECONDS",
    help="On SIGTERM, how long running batches get to finish before they are given back to the queue.",
)
@isolation_option
@sandbox_uids_option
@egress_options
@quota_option("A default quota: new tenants' and runs' ceilings", envvar="RH_DEFAULT_QUOTAS")
@click.option(
    "--retention-days",
    type=click.FloatRange(0, min_open=True),
    envvar="RH_RETENTION_DAYS",
    help="Purge finished batches, their runs and outcomes this many days after they finished (default: keep).",
)
@click.option(
    "--housekeeping-seconds",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0.1),
    envvar="RH_HOUSEKEEPING_SECONDS",
    help="How often retention and the garbage collection of unreferenced plugin files run.",
)
@click.option(
    "--tenant-max-tasks",
    type=click.IntRange(16),
    envvar="RH_TENANT_MAX_TASKS",
    help="Processes and threads of one tenant's runs together (a pids cgroup per tenant).  "
    "[default: min(4096, pid_max / 4)]",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    help="Open HTTP connections at once; more are answered 503 and closed.  [default: 512]",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    help="Seconds a client has to send a request's line and headers (then 408 and close).  [default: 10]",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.1),
    help="Seconds a client has to send a request's body once its headers are in.  [default: 120]",
)
@click.option("--migrate-only", is_flag=True, help="Bring the database schema up to date and exit.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info", show_default=True)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    database_url: str | None,
    workers: int,
    role: str,
    lease_seconds: float,
    shutdown_seconds: float,
    isolation: str,
    sandbox_uids: UidRange | None,
    egress: EgressSettings,
    quotas: dict[str, str],
    retention_days: float | None,
    housekeeping_seconds: float,
    tenant_max_tasks: int | None,
    max_connections: int | None,
    header_timeout: float | None,
    body_timeout: float | None,
    migrate_only: bool,
    log_level: str,
) -> None:
    """Serve the HTTP API and run submitted batches (SQLite in --data-dir unless --database-url)."""
    from rh_host.service import Service, ServiceSettings
    from rh_host.service import serve as run_server
    from rh_host.service.db import current_revision
    from rh_host.service.http_guard import ConnectionLimits

    logging.getLogger().setLevel(log_level.upper())
    logging.getLogger("rh").setLevel(log_level.upper())
    settings = ServiceSettings(
        data_dir=data_dir.resolve(),
        database_url=database_url,
        workers=workers,
        role=role,
        lease_seconds=lease_seconds,
        shutdown_seconds=shutdown_seconds,
        isolation=isolation,
        egress=egress,
        sandbox_uids=sandbox_uids,
        default_quotas=default_quotas(quotas),
        retention_days=retention_days,
        housekeeping_seconds=housekeeping_seconds,
        tenant_max_tasks=tenant_max_tasks,
    )
    if not migrate_only:
        try:
            check_isolation(isolation, uids=SandboxUids.over(sandbox_uids))
        except SandboxError as exc:
            fail(f"cannot serve: {exc}", code=EXIT_FAILED)
    try:
        if migrate_only:
            service = Service(settings)
            click.echo(f"database at revision {current_revision(service.engine)}")
            service.close()
            return
        given = {
            "max_connections": max_connections,
            "header_read_seconds": header_timeout,
            "body_read_seconds": body_timeout,
        }
        limits = ConnectionLimits(**{name: value for name, value in given.items() if value is not None})
        run_server(settings, host, port, log_level, limits)
    except HostError as exc:
        fail(str(exc))
