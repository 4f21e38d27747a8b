"""The ResultHandler base class: the plugin guide's handler API, unchanged."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_PRIORITY", "ResultHandler", "interpret_return", "log_level"]

DEFAULT_PRIORITY = 100


class ResultHandler:
    """Base class for result handlers.

    Subclasses override :meth:`handle` (and usually :meth:`name`). Base config keys:
    ``priority`` (lower runs first, default 100), ``enabled`` (default True) and ``log_level``.

    ``handle`` returns ``True`` (success), ``False`` (failure) or a ``dict``: success, and the dict
    is the handler's *output*, merged by the host into the batch outcome. Raising is a failure too.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.logger: logging.Logger = logging.getLogger(f"rh.handler.{type(self).__name__}")
        level = self.config.get("log_level")
        if level:
            self.logger.setLevel(log_level(level))

    @property
    def priority(self) -> int:
        return int(self.config.get("priority", DEFAULT_PRIORITY))

    def name(self) -> str:
        """Handler name, used in logs and outcomes. Defaults to the class name."""
        return type(self).__name__

    def enabled(self, metadata: dict[str, Any] | None = None) -> bool:
        """Whether to run for this batch; the default honours the ``enabled`` config key."""
        return bool(self.config.get("enabled", True))

    def handle(self, batch_id: str, results: list[dict[str, Any]], metadata: dict[str, Any]) -> Any:
        """Process one batch. Return True, False, or a dict of output (success)."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle()")

    def on_error(self, error: BaseException) -> None:
        """Called when :meth:`handle` raised. The default logs the error with its traceback."""
        self.logger.error(
            f"Handler error: {error}",
            extra={"handler": self.name()},
            exc_info=(type(error), error, error.__traceback__),
        )


def log_level(value: Any) -> int:
    """A ``log_level`` config value (a name in any case, or a number) as a logging level."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    level = logging.getLevelName(str(value).upper())
    if not isinstance(level, int):
        raise ValueError(f"log_level {value!r} is not a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return level


def interpret_return(value: Any) -> tuple[bool, dict[str, Any], str | None]:
    """Map what ``handle`` returned to (ok, output, error), one convention for registry and runner."""
    if value is True or value is False:
        return value, {}, None if value else "handle() returned False"
    if isinstance(value, Mapping):
        return True, {str(k): v for k, v in value.items()}, None
    return False, {}, f"handle() returned {type(value).__name__}; return True, False or a dict"
