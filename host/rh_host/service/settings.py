"""Service settings and tenant quotas: plain data, units in every name."""

from __future__ import annotations

from pathlib import Path

import msgspec

from rh_sandbox import EgressSettings, UidRange

__all__ = ["ROLES", "Quotas", "ServiceSettings", "UploadCaps"]

ROLES = ("all", "api", "worker")


class Quotas(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tenant's ceilings and totals. The first eight fields are the fields of a plugin's ``[limits]``:
    requested limits are clamped to them, never refused. The rest bound what a tenant may store or run;
    going over one answers 413 or 429 ``quota_exceeded`` naming it. A field missing from a tenant's
    stored quotas (written before the field existed) takes the default here."""

    # per-run ceilings (rh_sandbox.types.Limits)
    cpu_seconds: float = 30.0
    memory_mb: int = 512
    wall_seconds: float = 60.0
    max_output_kb: int = 4096
    max_log_kb: int = 1024
    max_processes: int = 64  # tasks (processes and threads) of one run
    scratch_mb: int = 256  # the run's writable /tmp
    max_open_files: int = 1024
    # per-tenant totals
    max_plugins: int = 20
    max_versions: int = 50  # stored versions of one plugin
    max_artifact_mb: int = 512  # unpacked files of every stored version of every plugin
    max_batch_mb: int = 32  # request body of one batch
    max_results: int = 50_000  # lines of one batch (OpenAI's input cap)
    max_stored_batches: int = 10_000  # batches kept (queued, running or done) until retention purges them
    max_stored_batch_mb: int = 2048  # their stored results and metadata
    max_concurrent_batches: int = 2  # batches of this tenant running at once

    def problems(self) -> list[str]:
        return [
            f"quotas.{field} must be positive, got {getattr(self, field)}"
            for field in self.__struct_fields__
            if getattr(self, field) <= 0
        ]


class UploadCaps(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on one plugin archive, checked before anything is written."""

    max_archive_mb: int = 16
    max_unpacked_mb: int = 64
    max_files: int = 2048  # vendored packages bring many small files
    max_ratio: float = 100.0  # unpacked / packed: zip bombs go far above


class ServiceSettings(msgspec.Struct, kw_only=True):
    data_dir: Path
    database_url: str | None = None  # None: SQLite in data_dir
    workers: int = 2
    isolation: str = "auto"
    egress: EgressSettings = msgspec.field(default_factory=EgressSettings)  # the cap on plugins' network grants
    sandbox_uids: UidRange | None = None  # where each tenant's own sandbox uid comes from (None: the default range)
    tenant_max_tasks: int | None = None  # tasks of one tenant's runs together (None: min(4096, pid_max / 4))
    run_parallel: int = 2  # concurrent handler runs inside one batch (equal priorities)
    default_quotas: Quotas = Quotas()
    upload: UploadCaps = UploadCaps()
    max_body_mb: int = 64  # hard cap on any request body, above every tenant's max_batch_mb
    retention_days: float | None = None  # finished batches older than this are purged (None: kept)
    housekeeping_seconds: float = 300.0  # how often retention and artifact garbage collection run
    role: str = "all"  # api: accept, store, answer; worker: claim and run; all: both (ROLES)
    lease_seconds: float = 30.0  # a claim lasts this long unless the node's heartbeat renews it
    shutdown_seconds: float = 5.0  # on SIGTERM, running batches get this long to finish before they are given back

    @property
    def sqlite_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'rh-host.db'}"

    @property
    def url(self) -> str:
        return self.database_url or self.sqlite_url
