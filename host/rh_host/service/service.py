"""The running service's parts, built from settings in one place and closed in reverse order."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import anyio

from rh_host.errors import HostError
from rh_host.service.artifacts import ArtifactStore
from rh_host.service.claims import Claims
from rh_host.service.data_dir_lock import DataDirLock
from rh_host.service.db import make_engine, migrate
from rh_host.service.errors import Unavailable, UploadRejected
from rh_host.service.heartbeat import Heartbeat
from rh_host.service.housekeeping import Housekeeper
from rh_host.service.intake import BodySlots
from rh_host.service.keys import load_operator_token
from rh_host.service.metrics import Metrics
from rh_host.service.node import Node
from rh_host.service.settings import ROLES, ServiceSettings
from rh_host.service.store import Store
from rh_host.service.upload_grants import UploadGrants
from rh_host.service.vault import Vault
from rh_host.service.wakeup import QueueListener
from rh_host.service.worker import BatchDispatch, LocalWorkerPool
from rh_sandbox import Dispatcher, SandboxError, WasmModuleError, make_dispatcher

__all__ = ["Service"]

_log = logging.getLogger("rh.service")


class Service:
    """Owns the engine, the sandbox dispatcher and the worker pool. ``start``/``close`` are the only
    lifecycle; the HTTP app calls them from its lifespan hooks, and ``drain`` runs on SIGTERM.

    The role decides what this process does: an ``api`` node accepts, stores and answers and never claims
    a batch; a ``worker`` node claims and runs (and still answers the API); ``all`` does both."""

    def __init__(self, settings: ServiceSettings, *, run_migrations: bool = True) -> None:
        if settings.role not in ROLES:
            raise HostError(f"role {settings.role!r}: must be one of {', '.join(ROLES)}")
        self.settings = settings
        self.intake_limiter: anyio.CapacityLimiter | None = None  # made by the first upload, in the event loop
        self.body_slots = BodySlots()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._dir_lock = DataDirLock.acquire(settings.data_dir)  # before anything in the dir is touched
        try:
            if settings.database_url is None:  # batches and tenants' data: 0600 (SQLite gives -wal/-shm the same)
                os.close(os.open(settings.data_dir / "rh-host.db", os.O_WRONLY | os.O_CREAT, 0o600))
            self.engine = make_engine(settings.url)
            if run_migrations:
                migrate(self.engine)
            self.store = Store(self.engine)
            self.operator_token, self.operator_token_source = load_operator_token(settings.data_dir)
            self.vault = Vault.for_data_dir(settings.data_dir)
            self.upload_grants = UploadGrants(self.vault.derived("batch-upload"))
            self.artifacts = ArtifactStore(settings.data_dir / "artifacts")
            self.metrics = Metrics(self.store.queue_depth)
            self.dispatcher: Dispatcher | None = None
            self.dispatch: BatchDispatch | None = None
            self.node: Node | None = None
            self.claims: Claims | None = None
            self.heartbeat: Heartbeat | None = None
            self.listener: QueueListener | None = None
            self._draining = threading.Event()
            self.housekeeper = Housekeeper(
                self.store,
                self.artifacts,
                retention_days=settings.retention_days,
                interval_seconds=settings.housekeeping_seconds,
            )
        except BaseException:
            self._dir_lock.release()
            raise

    @property
    def runs_batches(self) -> bool:
        return self.settings.role in ("all", "worker")

    @property
    def draining(self) -> bool:
        """SIGTERM arrived: claim nothing, answer what is open without waiting."""
        return self._draining.is_set()

    def drain(self) -> None:
        """Stop claiming at once (called from the signal handler; setting events only)."""
        self._draining.set()
        if self.dispatch is not None:
            self.dispatch.stop_claiming()

    def start(self) -> None:
        self.node = Node(self.settings.data_dir, self.settings.role)
        self.claims = Claims(self.engine, self.node.id, self.settings.lease_seconds)
        released = self.claims.release_nodes(self.node.dead_peers())
        if released:
            _log.warning("gave back %d batch(es) held by dead node(s) of this data dir", released)
        self.dispatcher = make_dispatcher(
            self.settings.isolation,
            self.settings.data_dir / "wasm-cache",
            egress=self.settings.egress,
            sandbox_uids=self.settings.sandbox_uids,
            group_max_tasks=self.settings.tenant_max_tasks,
        )
        self.heartbeat = Heartbeat(self.claims, self.settings.role, renews_leases=self.runs_batches)
        self.heartbeat.start()
        if self.runs_batches:
            self.dispatch = LocalWorkerPool(
                self.store,
                self.claims,
                self.artifacts,
                self.vault,
                self.dispatcher,
                self.metrics,
                workers=self.settings.workers,
                run_parallel=self.settings.run_parallel,
                upload_caps=self.settings.upload,
            )
            self.dispatch.start()
            if self.engine.dialect.name == "postgresql":  # batches other processes accept wake this one
                self.listener = QueueListener(self.engine, self.dispatch.notify)
                self.listener.start()
        self.housekeeper.start()
        _log.info("node %s, role %s; operator token: %s", self.node.id, self.settings.role, self.operator_token_source)

    def collect_artifacts(self) -> int:
        """Remove the artifacts no plugin version references any more (after a delete)."""
        return self.artifacts.collect(self.store.referenced_digests)

    def check_module(self, path: Path, name: str, *, tenant_id: str) -> None:
        """Check a tenant's uploaded WASM module with the backend its runs will have: at the strict
        level compiled, and its start function run, in a sandbox as the tenant's own uid."""
        from rh_sandbox import WasmBackend

        if self.dispatcher is None:
            raise Unavailable("the service is not running")
        backend = self.dispatcher.backend("wasm")
        if not isinstance(backend, WasmBackend):
            raise Unavailable(f"cannot check a WASM module with a {type(backend).__name__}")
        try:
            backend.validate(path, group=tenant_id, name=name)
        except WasmModuleError as exc:
            raise UploadRejected(str(exc)) from None
        except SandboxError as exc:
            _log.error("checking an uploaded module failed: %s", exc)
            raise Unavailable(f"cannot check the module now: {exc}") from None

    def notify(self) -> None:
        if self.dispatch is not None:
            self.dispatch.notify()

    def close(self) -> None:
        """Stop claiming; give running batches ``shutdown_seconds`` to finish; kill what still runs and
        give those batches back to the queue at once, for the other nodes."""
        self.drain()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.housekeeper.close()
        if self.dispatch is not None:
            self.dispatch.close(self.settings.shutdown_seconds)
            self.dispatch = None
        if self.dispatcher is not None:
            self.dispatcher.close()
            self.dispatcher = None
        if self.heartbeat is not None:
            self.heartbeat.close()
            self.heartbeat = None
        if self.claims is not None:
            try:
                released = self.claims.release_all()
                self.claims.leave()
            except Exception:  # the database away: the leases end on their own
                _log.exception("cannot give this node's batches back; they are requeued when their leases end")
            else:
                if released:
                    _log.info("gave back %d unfinished batch(es) to the queue", released)
        if self.node is not None:
            self.node.close()
            self.node = None
        self.engine.dispose()
        self._dir_lock.release()
