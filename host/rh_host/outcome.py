"""The batch outcome: every handler's run in (priority, name) order, merged into one result."""

from __future__ import annotations

from typing import Any

import msgspec

from rh_sdk.protocol import LogRecord, RunStatus, Usage

__all__ = ["BatchOutcome", "ClampedLimit", "Conflict", "HandlerRun", "merge_outcome"]


class ClampedLimit(msgspec.Struct, frozen=True):
    """A limit the plugin asked for above its ceiling, and what the run got instead."""

    requested: float
    effective: float


class HandlerRun(msgspec.Struct, kw_only=True):
    """One handler's run as the batch outcome reports it."""

    name: str
    version: str
    runtime: str
    priority: int
    status: RunStatus
    error: str | None = None
    output: dict[str, Any] = {}
    logs: list[LogRecord] = []
    usage: Usage = msgspec.field(default_factory=Usage)
    isolation: str = ""
    egress: list[dict[str, Any]] | None = None  # connections through the host's egress broker (network grants)
    clamped_limits: dict[str, ClampedLimit] = {}  # manifest limits lowered to the ceilings, by field


class Conflict(msgspec.Struct, kw_only=True):
    """An output key set by several handlers: the lowest priority number (then name) wins."""

    key: str
    winner: str
    overridden: list[str]


class BatchOutcome(msgspec.Struct, kw_only=True):
    batch_id: str
    success: bool  # every enabled handler ended ok
    result_count: int
    handlers: list[HandlerRun]
    output: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    duration_ms: float = 0.0
    error: str | None = None  # a fault of the host that stopped the whole batch (then success is false)

    def host_errors(self) -> list[HandlerRun]:
        """The runs the host could not carry out: a reason to run the batch again, never the handlers' fault."""
        return [run for run in self.handlers if run.status is RunStatus.HOST_ERROR]


def merge_outcome(batch_id: str, runs: list[HandlerRun], result_count: int, duration_ms: float) -> BatchOutcome:
    """Order runs by (priority, name) and merge the outputs of those that succeeded."""
    ordered = sorted(runs, key=lambda r: (r.priority, r.name))
    merged: dict[str, Any] = {}
    owners: dict[str, str] = {}
    conflicts: dict[str, Conflict] = {}
    for run in ordered:
        if run.status is not RunStatus.OK:
            continue
        for key, value in run.output.items():
            if key not in owners:
                owners[key] = run.name
                merged[key] = value
            else:
                conflict = conflicts.setdefault(key, Conflict(key=key, winner=owners[key], overridden=[]))
                conflict.overridden.append(run.name)
    success = all(r.status in (RunStatus.OK, RunStatus.SKIPPED) for r in ordered)
    return BatchOutcome(
        batch_id=batch_id,
        success=success,
        result_count=result_count,
        handlers=ordered,
        output=merged,
        conflicts=list(conflicts.values()),
        duration_ms=round(duration_ms, 3),
    )
