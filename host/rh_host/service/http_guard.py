"""What uvicorn lacks against slow or idle clients: a deadline for a request's head and one for its body,
and a cap on open connections.

uvicorn's keep-alive timer runs only between requests and any byte received cancels it, so a client that
connects and sends nothing, or trickles a header a byte at a time, holds a connection and its file
descriptor for ever. This protocol arms a deadline when a connection opens and whenever a new request
begins, swaps it for the body deadline once h11 has parsed the head, and drops it once the body has
arrived.

At the connection cap, a new connection takes the place of the one that has waited longest for its
request head (answered 408 and closed): a real client sends its head within milliseconds, so the
connections that wait are the idle and the slow ones, and a flood of them cannot lock out a health
check. Only when every connection is inside a request is the newcomer answered 503 and closed.
Closed connections are counted and reported at most once per ``report_seconds``: an attack costs a
few log lines, not one per connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, ClassVar

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ClosureLog", "ConnectionLimits", "GuardedH11Protocol", "guarded_protocol"]

_log = logging.getLogger("rh.service.http")


class ConnectionLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_connections: int = 512  # open at once; keeps the service's fds far below the process limit
    header_read_seconds: float = 10.0  # from a request's first byte (or the connection's start) to its head's end
    body_read_seconds: float = 120.0  # from the head's end to the body's end: 64 MiB at >= 0.55 MiB/s
    report_seconds: float = 60.0  # at most one log line about closed connections per this interval


def _plain_response(status: int, reason: str, message: str) -> bytes:
    body = msgspec.json.encode({"error": {"code": reason.lower().replace(" ", "_"), "message": message}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ClosureLog:
    """Counts connections the guard closed, by reason; logs the counts at most once per interval."""

    def __init__(self, report_seconds: float) -> None:
        self.report_seconds = report_seconds
        self._pending: Counter[str] = Counter()
        self._last_report = -float("inf")

    def note(self, reason: str) -> None:
        self._pending[reason] += 1
        now = time.monotonic()
        if now - self._last_report >= self.report_seconds:
            parts = ", ".join(f"{count} {why}" for why, count in sorted(self._pending.items()))
            _log.warning("closed %d connection(s) since the last report: %s", sum(self._pending.values()), parts)
            self._pending.clear()
            self._last_report = now


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and a connection cap (see the module docstring)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    closures: ClassVar[ClosureLog] = ClosureLog(limits.report_seconds)
    waiting: ClassVar[dict[GuardedH11Protocol, None]] = {}  # waiting for a request head, longest first

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = ""  # "head" or "body" while a deadline is armed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        at_cap = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if at_cap:
            longest = next(iter(self.waiting), None)
            if longest is None:
                self.closures.note("refused: every connection inside a request")
                message = f"the server holds its maximum of {self.limits.max_connections} connections; retry later"
                transport.write(_plain_response(503, "Service Unavailable", message))
                transport.close()
                return
            longest._close_waiting()
        self._arm("head")

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm("head")  # a new request on a kept-alive connection
        super().data_received(data)
        state = self.conn.their_state
        if self.transport.is_closing():  # uvicorn answered a malformed request and closed
            self._disarm()
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body")
        elif state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, phase: str) -> None:
        self._disarm()
        seconds = self.limits.header_read_seconds if phase == "head" else self.limits.body_read_seconds
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)
        if phase == "head":
            self.waiting[self] = None

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._phase = ""
        self.waiting.pop(self, None)

    def _close_waiting(self) -> None:
        """Make room at the cap: close this connection, which has waited longest for a request head."""
        self._disarm()
        self.closures.note("closed at the connection cap while waiting for a request head")
        message = "the server is at its connection cap and this connection had sent no request"
        self.transport.write(_plain_response(408, "Request Timeout", message))
        self.transport.close()

    def _expired(self, phase: str, seconds: float) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        what = "request head" if phase == "head" else "request body"
        self.closures.note(f"{what} not received within {seconds:g} s")
        answered = phase == "body" and self.cycle is not None and self.cycle.response_started
        if not answered:  # the app may have answered before reading the body: then no second response
            message = f"the {what} did not arrive within {seconds:g} s"
            self.transport.write(_plain_response(408, "Request Timeout", message))
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` bound to these limits and its own closure log."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "closures": ClosureLog(limits.report_seconds), "waiting": {}},
    )
