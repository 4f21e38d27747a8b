"""Running queued batches. ``BatchDispatch`` is the one interface the service uses to get batches
run; ``LocalWorkerPool`` is its implementation with threads in this process, claiming through the
database (``rh_host.service.claims``), so that any number of processes on any number of machines can
share one PostgreSQL.

Delivery is at least once: a batch is claimed (running, with a lease), its runs are recorded as they
end, and its outcome is written once, in the same transaction that marks it done, by the node that
holds it. A process that dies mid-batch leaves it running; when its lease ends (at once, for a
restart on the same data dir) it goes back to the queue and the stored runs are replayed.

A fault of the host is not an outcome: a batch with a ``host_error`` run (the sandbox could not run
it, or the plugin's stored files cannot be loaded) runs again, a bounded number of times with
exponential backoff, replaying the runs that ended; only then is its outcome stored with that status.
Every plugin version active at intake appears in the outcome: none is silently left out.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import msgspec
import tenacity

from rh_host.errors import ManifestError
from rh_host.manifest import Manifest, Plugin, load_plugin
from rh_host.outcome import BatchOutcome, HandlerRun, merge_outcome
from rh_host.pipeline import NOT_RUN, Pipeline, is_disabled
from rh_host.service.artifacts import ArtifactStore, ArtifactUnavailable
from rh_host.service.claims import Claims, Finish
from rh_host.service.limits import clamp_limits
from rh_host.service.metrics import Metrics
from rh_host.service.recording import RecordingBackend, ShuttingDown
from rh_host.service.redaction import redact_text
from rh_host.service.settings import Quotas, UploadCaps
from rh_host.service.store import Row, Store
from rh_host.service.vault import Vault
from rh_sandbox import Backend
from rh_sdk.protocol import ResultLine, RunStatus

__all__ = ["BatchDispatch", "LocalWorkerPool"]

_log = logging.getLogger("rh.service.worker")
_decode_results = msgspec.msgpack.Decoder(list[ResultLine]).decode
_decode_manifest = msgspec.json.Decoder(Manifest).decode
_MAX_HOST_FAULTS = 3  # attempts before a batch that keeps breaking the host gets a failed outcome
_HOST_ERROR_RETRIES = 3  # runs again of a batch with host_error runs, before its outcome keeps them
_RETRY_FIRST_WAIT_SECONDS = 0.5  # then doubled each time, up to _RETRY_MAX_WAIT_SECONDS
_RETRY_MAX_WAIT_SECONDS = 8.0
_IDLE_POLL_SECONDS = 1.0
_UNAVAILABLE_PAUSE_SECONDS = 2.0  # after giving back a batch whose plugin files this node cannot get


class BatchDispatch(Protocol):
    def start(self) -> None: ...

    def notify(self) -> None:
        """A batch was queued: wake a worker now rather than at the next poll."""

    def stop_claiming(self) -> None:
        """Claim nothing more from now on (safe to call from a signal handler)."""

    def close(self, timeout: float = 5.0) -> None:
        """Stop claiming, let running batches finish within ``timeout``, then abandon the rest."""


class LocalWorkerPool:
    def __init__(
        self,
        store: Store,
        claims: Claims,
        artifacts: ArtifactStore,
        vault: Vault,
        backend: Backend,
        metrics: Metrics,
        *,
        workers: int = 2,
        run_parallel: int = 2,
        host_error_retries: int = _HOST_ERROR_RETRIES,
        retry_first_wait_seconds: float = _RETRY_FIRST_WAIT_SECONDS,
        upload_caps: UploadCaps | None = None,
    ) -> None:
        self._store = store
        self._claims = claims
        self._artifacts = artifacts
        self._vault = vault
        self._backend = backend
        self._metrics = metrics
        self._workers = workers
        self._run_parallel = run_parallel
        self._host_error_retries = host_error_retries
        self._retry_first_wait_seconds = retry_first_wait_seconds
        self._upload_caps = upload_caps or UploadCaps()  # unpacking a fetched archive: as at upload
        self._wake = threading.Condition()
        self._pending_wakes = 0
        self._draining = threading.Event()  # claim nothing more
        self._stopping = threading.Event()  # abandon what is running
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._loop, name=f"rh-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        with self._wake:
            self._pending_wakes += 1
            self._wake.notify()

    def stop_claiming(self) -> None:
        self._draining.set()  # an Event only: this runs in a signal handler; idle threads see it within a poll

    def close(self, timeout: float = 5.0) -> None:
        """Stop claiming; batches still running after ``timeout`` are abandoned unrecorded (the service then
        gives them back to the queue)."""
        self.stop_claiming()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._stopping.set()

    def _loop(self) -> None:
        while not self._draining.is_set():
            try:
                row = self._claims.claim_next()
            except Exception:
                _log.exception("cannot claim a batch; retrying")
                row = None
            if row is None:
                with self._wake:
                    if self._pending_wakes == 0 and not self._draining.is_set():
                        self._wake.wait(_IDLE_POLL_SECONDS)
                    self._pending_wakes = 0
                continue
            if self._draining.is_set():  # the claim raced the shutdown: another node runs it
                self._claims.release(row.pk)
                return
            self._process(row)

    def _process(self, row: Row) -> None:
        try:
            outcome = self._run_retrying_host_errors(row)
        except ArtifactUnavailable as exc:  # not a plugin's failure, nor a reason to give the batch an outcome
            _log.error("batch %s of %s: given back to the queue, not run: %s", row.batch_id, row.tenant_id, exc)
            self._claims.release(row.pk)
            self._stopping.wait(_UNAVAILABLE_PAUSE_SECONDS)
            return
        except ShuttingDown:
            _log.info("batch %s: abandoned unrecorded (shutting down); given back to the queue", row.batch_id)
            return
        except Exception as exc:
            _log.exception("batch %s of %s: host fault (attempt %d)", row.batch_id, row.tenant_id, row.attempts)
            if row.attempts < _MAX_HOST_FAULTS:
                self._claims.release(row.pk)
                return
            outcome = BatchOutcome(
                batch_id=row.batch_id,
                success=False,
                result_count=row.result_count,
                handlers=[],
                error=f"host error: the batch could not be run in {row.attempts} attempts ({type(exc).__name__})",
            )
            _log.error("batch %s: giving up after %d attempts: %s", row.batch_id, row.attempts, exc)
        finished = self._claims.finish(row.pk, outcome.success, msgspec.json.encode(outcome).decode())
        if finished is not Finish.STORED:  # this node's lease ended and another node took the batch over
            _log.warning(
                "batch %s: another node took it over (%s); this outcome is dropped", row.batch_id, finished.name
            )
        if finished is Finish.STORED:
            self._metrics.batches_completed.labels(success=str(outcome.success).lower()).inc()
            self._metrics.batch_seconds.observe(max(0.0, time.time() - row.submitted_at))
        for run in outcome.handlers:
            self._metrics.runs.labels(status=run.status.value).inc()
            self._metrics.run_seconds.observe(run.usage.wall_ms / 1000)

    def _run_retrying_host_errors(self, row: Row) -> BatchOutcome:
        """Run the batch; while a run ends ``host_error``, run it again after a growing pause (the runs
        that ended are replayed from the store). The last outcome is returned however it ended."""

        def log_retry(state: tenacity.RetryCallState) -> None:
            faults = state.outcome.result().host_errors() if state.outcome is not None else []
            _log.warning(
                "batch %s: host error in %s (try %d); running it again in %.1f s",
                row.batch_id,
                ", ".join(f"{r.name}: {r.error}" for r in faults),
                state.attempt_number,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda outcome: bool(outcome.host_errors())),
            stop=tenacity.stop_after_attempt(1 + self._host_error_retries),
            wait=tenacity.wait_exponential(multiplier=self._retry_first_wait_seconds, max=_RETRY_MAX_WAIT_SECONDS),
            sleep=self._pause,
            before_sleep=log_retry,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
        )
        return retrying(self._run_batch, row)  # type: ignore[no-any-return]

    def _pause(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise ShuttingDown("backoff")

    def _run_batch(self, row: Row) -> BatchOutcome:
        payload = self._store.batch_payload(row.pk)
        quotas = msgspec.json.decode(row.quotas, type=Quotas)
        metadata: dict[str, Any] = msgspec.json.decode(payload.metadata)
        plugins: list[Plugin] = []
        version_ids: dict[str, int] = {}
        secret_values: list[str] = []
        unloadable: list[HandlerRun] = []
        for version in self._store.runnable_versions(msgspec.json.decode(payload.version_ids)):
            secrets = self._vault.unseal(version.sealed_secrets)
            secret_values += [str(v) for v in secrets.values()]
            config = {**msgspec.json.decode(version.config), **secrets}
            directory = self._artifacts.path_for(version.digest)
            try:
                directory = self._artifacts.local_copy(version.digest, self._store.artifact_archive, self._upload_caps)
                plugin = load_plugin(directory, config)
            except (ArtifactUnavailable, ManifestError) as exc:
                stored = Plugin(manifest=_decode_manifest(version.manifest), directory=str(directory), config=config)
                if isinstance(exc, ArtifactUnavailable) and not is_disabled(stored):
                    raise  # the batch waits for a node that can get the files
                _log.error("batch %s: plugin %s cannot be loaded: %s", row.batch_id, version.name, exc)
                unloadable.append(_unloadable_run(stored))
                continue
            plugins.append(plugin)
            version_ids[plugin.name] = version.id
        backend = RecordingBackend(
            self._backend, self._store, row.pk, version_ids, secret_values, stopping=self._stopping.is_set
        )
        pipeline = Pipeline(backend, max_parallel=self._run_parallel)
        outcome = pipeline.run(
            row.batch_id,
            _decode_results(payload.results),
            metadata,
            plugins,
            group=row.tenant_id,
            limits_for=lambda p: clamp_limits(p.manifest.limits, quotas).effective,
        )
        if backend.replayed:
            _log.info("batch %s: replayed stored runs of %s", row.batch_id, ", ".join(backend.replayed))
        if unloadable:
            runs = [*outcome.handlers, *unloadable]
            outcome = merge_outcome(row.batch_id, runs, outcome.result_count, outcome.duration_ms)
        return _redact_host_errors(outcome, secret_values)


def _redact_host_errors(outcome: BatchOutcome, secret_values: list[str]) -> BatchOutcome:
    """Runs were redacted as they were recorded, and the merged output is theirs; what the host wrote
    itself (a host_error run's error, the batch's error) quotes exceptions, so only that is redacted
    here, not the whole outcome a second time."""
    if not secret_values:
        return outcome
    handlers = [
        msgspec.structs.replace(run, error=redact_text(run.error, secret_values))
        if run.status is RunStatus.HOST_ERROR and run.error
        else run
        for run in outcome.handlers
    ]
    error = redact_text(outcome.error, secret_values) if outcome.error else outcome.error
    return msgspec.structs.replace(outcome, handlers=handlers, error=error)


def _unloadable_run(plugin: Plugin) -> HandlerRun:
    """The run of a plugin version whose stored files the host cannot load: never left out of the outcome
    (skipped, as the pipeline would, when its config disables it)."""
    disabled = is_disabled(plugin)
    return HandlerRun(
        name=plugin.name,
        version=plugin.manifest.version,
        runtime=plugin.manifest.runtime,
        priority=plugin.priority,
        status=RunStatus.SKIPPED if disabled else RunStatus.HOST_ERROR,
        error=None if disabled else "host error: this plugin version's stored files cannot be loaded on this host",
        isolation=NOT_RUN,
    )
