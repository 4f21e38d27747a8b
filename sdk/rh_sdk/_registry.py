"""The in-process registry of the plugin guide: the unsandboxed reference and the test harness."""

from __future__ import annotations

import logging
import threading
from typing import Any

import msgspec

from rh_sdk._handler import ResultHandler, interpret_return
from rh_sdk.protocol import RunStatus

__all__ = ["HandlerOutcome", "HandlerRegistry", "get_registry"]

_log = logging.getLogger("rh.registry")


class HandlerOutcome(msgspec.Struct, kw_only=True):
    """What one handler did in :meth:`HandlerRegistry.process_results`."""

    name: str
    priority: int
    status: RunStatus
    output: dict[str, Any] = {}
    error: str | None = None


class HandlerRegistry:
    """Runs registered handlers in-process, lower priority first; one failure never stops the rest.

    No isolation and no limits: use it to unit-test a handler, never for untrusted code.
    """

    def __init__(self) -> None:
        self._handlers: list[ResultHandler] = []
        self.last_outcomes: list[HandlerOutcome] = []

    def register(self, handler: ResultHandler) -> None:
        if not isinstance(handler, ResultHandler):
            raise TypeError(f"expected a ResultHandler, got {type(handler).__name__}")
        self._handlers.append(handler)

    def unregister(self, name: str) -> None:
        self._handlers = [h for h in self._handlers if h.name() != name]

    def clear(self) -> None:
        self._handlers.clear()

    @property
    def handlers(self) -> list[ResultHandler]:
        """Registered handlers in run order: (priority, name)."""
        return sorted(self._handlers, key=lambda h: (h.priority, h.name()))

    def process_results(
        self, batch_id: str, results: list[dict[str, Any]], metadata: dict[str, Any] | None = None
    ) -> bool:
        """Run every handler; True when every enabled handler succeeded."""
        metadata = metadata or {}
        outcomes = [self._run_one(h, batch_id, results, metadata) for h in self.handlers]
        self.last_outcomes = outcomes
        return all(o.status in (RunStatus.OK, RunStatus.SKIPPED) for o in outcomes)

    @staticmethod
    def _run_one(
        handler: ResultHandler, batch_id: str, results: list[dict[str, Any]], metadata: dict[str, Any]
    ) -> HandlerOutcome:
        name, priority = handler.name(), handler.priority
        try:
            if not handler.config.get("enabled", True) or not handler.enabled(metadata):
                return HandlerOutcome(name=name, priority=priority, status=RunStatus.SKIPPED)
            ok, output, error = interpret_return(handler.handle(batch_id, results, metadata))
        except Exception as exc:
            _log.error("handler %s raised %s: %s", name, type(exc).__name__, exc, exc_info=True)
            try:
                handler.on_error(exc)
            except Exception:
                _log.exception("on_error of handler %s raised", name)
            return HandlerOutcome(
                name=name, priority=priority, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"
            )
        status = RunStatus.OK if ok else RunStatus.FAILED
        return HandlerOutcome(name=name, priority=priority, status=status, output=output, error=error)


_registry: HandlerRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> HandlerRegistry:
    """The process-wide registry, as in the plugin guide."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = HandlerRegistry()
        return _registry
