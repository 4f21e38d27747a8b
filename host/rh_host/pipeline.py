"""Run a tenant's plugins over one batch: ascending priority, equal priorities concurrently.

The batch is encoded once per encoding (``msgspec.Raw``) and the same bytes are spliced into every
handler's invocation. A later priority starts when every run of the earlier one has ended, whatever
its status. One run's failure, even a fault of the sandbox, never stops the others. A fault of the
host (the backend raising) is reported as ``host_error``, never as the handler's status: whoever runs
the pipeline decides whether to run the batch again.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec

from rh_host.manifest import Plugin
from rh_host.outcome import BatchOutcome, ClampedLimit, HandlerRun, merge_outcome
from rh_sandbox import Backend, Limits, RunResult, SandboxError
from rh_sdk.protocol import Encoding, Invocation, ResultLine, RunStatus, encode_invocation

__all__ = ["NOT_RUN", "Pipeline", "RunEvent", "is_disabled"]

_log = logging.getLogger("rh.pipeline")
NOT_RUN = "none (not started)"  # the isolation of a run that never reached a sandbox


def is_disabled(plugin: Plugin) -> bool:
    """Its config turns it off (``enabled = false``): it is skipped, never started."""
    return plugin.config.get("enabled", True) is False


@dataclass(frozen=True)
class RunEvent:
    """Progress: a handler started (``run`` is None) or ended."""

    batch_id: str
    plugin: str
    priority: int
    index: int  # 1-based position in run order
    total: int
    run: HandlerRun | None = None


class _EncodedBatch:
    """The results, encoded at most once per encoding."""

    def __init__(self, results: Sequence[ResultLine]) -> None:
        self._results = results
        self._raw: dict[Encoding, msgspec.Raw] = {}

    def raw(self, encoding: Encoding) -> msgspec.Raw:
        if encoding not in self._raw:
            encode = msgspec.json.encode if encoding == "json" else msgspec.msgpack.encode
            self._raw[encoding] = msgspec.Raw(encode(self._results))
        return self._raw[encoding]


class Pipeline:
    """Runs plugins through a sandbox backend and merges their outcomes."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_parallel: int = 2,
        progress: Callable[[RunEvent], None] | None = None,
    ) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.backend = backend
        self.max_parallel = max_parallel
        self.progress = progress

    def run(
        self,
        batch_id: str,
        results: Sequence[ResultLine],
        metadata: dict[str, Any],
        plugins: Sequence[Plugin],
        *,
        group: str = "default",
        limits_for: Callable[[Plugin], Limits] | None = None,
    ) -> BatchOutcome:
        started = time.monotonic()
        batch = _EncodedBatch(results)
        ordered = sorted(plugins, key=lambda p: (p.priority, p.name))
        runs: list[HandlerRun] = []
        position = itertools.count(1)
        with ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="rh-run") as pool:
            for priority, same in itertools.groupby(ordered, key=lambda p: p.priority):
                tier = [(next(position), p) for p in same]
                n = len(ordered)
                futures = [
                    pool.submit(self._run_one, batch_id, batch, metadata, p, group, limits_for, i, n) for i, p in tier
                ]
                runs.extend(f.result() for f in futures)  # the next priority waits for all of these
                _log.debug("batch %s: priority %d done", batch_id, priority)
        return merge_outcome(batch_id, runs, len(results), (time.monotonic() - started) * 1000)

    def _run_one(
        self,
        batch_id: str,
        batch: _EncodedBatch,
        metadata: dict[str, Any],
        plugin: Plugin,
        group: str,
        limits_for: Callable[[Plugin], Limits] | None,
        index: int,
        total: int,
    ) -> HandlerRun:
        event = RunEvent(batch_id, plugin.name, plugin.priority, index, total)
        self._emit(event)
        spec = plugin.run_spec(group, limits_for(plugin) if limits_for else None)
        if is_disabled(plugin):
            result = RunResult(status=RunStatus.SKIPPED, error=None, isolation=NOT_RUN)
        else:
            invocation = Invocation(
                batch_id=batch_id,
                handler=plugin.name,
                config=plugin.config,
                metadata=metadata,
                results=batch.raw(spec.encoding),  # type: ignore[arg-type]  # pre-encoded, spliced as is
            )
            try:
                result = self.backend.run(spec, encode_invocation(invocation, spec.encoding))
            except SandboxError as exc:  # the sandbox could not run it: the host's fault, never the handler's
                _log.error("batch %s: sandbox fault running %s: %s", batch_id, plugin.name, exc)
                result = RunResult(status=RunStatus.HOST_ERROR, error=f"sandbox fault: {exc}", isolation=NOT_RUN)
            except Exception as exc:  # a host bug or an OS failure (no disk, no fds): this run only
                _log.exception("batch %s: unexpected fault running %s", batch_id, plugin.name)
                error = f"host fault: {type(exc).__name__}: {exc}"
                result = RunResult(status=RunStatus.HOST_ERROR, error=error, isolation=NOT_RUN)
        run = HandlerRun(
            name=plugin.name,
            version=plugin.manifest.version,
            runtime=plugin.manifest.runtime,
            priority=plugin.priority,
            status=result.status,
            error=result.error,
            output=result.reply.output if result.reply is not None and result.status is RunStatus.OK else {},
            logs=result.logs,
            usage=result.usage,
            isolation=result.isolation,
            egress=result.egress,
            clamped_limits=_clamped(plugin.manifest.limits, spec.limits),
        )
        self._emit(RunEvent(batch_id, plugin.name, plugin.priority, index, total, run))
        return run

    def _emit(self, event: RunEvent) -> None:
        if self.progress is not None:
            try:
                self.progress(event)
            except Exception:  # a progress printer must never break a batch
                _log.exception("progress callback failed")


def _clamped(requested: Limits, effective: Limits) -> dict[str, ClampedLimit]:
    return {
        field: ClampedLimit(requested=getattr(requested, field), effective=getattr(effective, field))
        for field in requested.__struct_fields__
        if getattr(requested, field) != getattr(effective, field)
    }
