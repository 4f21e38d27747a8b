"""A log filter that bounds how much the service writes when something repeats: a flood of bad requests,
accept() failing, a database gone. Without it one attacker turns into megabytes of log a second."""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["LogBudget"]


class LogBudget(logging.Filter):
    """Passes at most ``per_message`` records of one (logger, message template) and ``total`` records in all
    per ``window_seconds``; the first record of the next window says how many were dropped."""

    def __init__(self, *, per_message: int = 20, total: int = 300, window_seconds: float = 60.0) -> None:
        super().__init__()
        self.per_message = per_message
        self.total = total
        self.window_seconds = window_seconds
        self._lock = threading.Lock()
        self._window_start = time.monotonic()
        self._passed: dict[tuple[str, str], int] = {}
        self._passed_total = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_log_budget", None)
        if verdict is None:  # a record that several filtered handlers see is counted once
            verdict = self._admit(record)
            record._log_budget = verdict  # type: ignore[attr-defined]
        return verdict

    def _admit(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.window_seconds:
                if self._dropped:
                    record.msg = f"{record.msg} [log budget: {self._dropped} record(s) dropped in the last window]"
                self._window_start = now
                self._passed.clear()
                self._passed_total = 0
                self._dropped = 0
            passed = self._passed.get(key, 0)
            if passed >= self.per_message or self._passed_total >= self.total:
                self._dropped += 1
                return False
            self._passed[key] = passed + 1
            self._passed_total += 1
            return True

    def install(self, *loggers: logging.Logger) -> None:
        """Filter every handler of these loggers (a handler filter sees records propagated from children)."""
        for logger in loggers:
            for handler in logger.handlers:
                if self not in handler.filters:
                    handler.addFilter(self)
