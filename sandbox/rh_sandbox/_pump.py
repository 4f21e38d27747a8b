"""Feed stdin and drain stdout/stderr of one child at once, with caps and a deadline.

A plugin that never reads stdin, floods stdout, writes 500 MB to stderr, or leaves a daemon holding
the pipes must not block or bloat the host: writes are non-blocking, reads stop at the cap, and the
loop ends at the deadline or shortly after the child exits, whatever else still holds the pipes.
"""

from __future__ import annotations

import contextlib
import enum
import os
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

__all__ = ["Breach", "Exchange", "exchange"]

_CHUNK = 1 << 16
_DRAIN_AFTER_EXIT_S = 0.2
_LIMIT_CHECK_S = 0.02  # how often CPU time and the process count are read (a fork bomb grows fast)


class Breach(enum.StrEnum):
    TIMEOUT = "timeout"
    OUTPUT = "output_limit"
    LOGS = "log_limit"
    CPU = "cpu_limit"
    PROCESSES = "process_limit"  # a fork or thread bomb hit max_processes


@dataclass
class Exchange:
    stdout: bytes
    stderr: bytes
    breach: Breach | None
    wall_s: float


class _Feed:
    """The payload still to go to the child's stdin, written as fast as the pipe accepts it: a child
    that never reads must not block the host, one that closes stdin early just gets no more."""

    def __init__(self, stdin: IO[bytes] | None, payload: bytes, sel: selectors.BaseSelector) -> None:
        self.stream = stdin
        self.fd = stdin.fileno() if stdin is not None else -1
        self.rest = memoryview(payload)
        if stdin is None:
            return
        os.set_blocking(self.fd, False)
        if self.rest:
            sel.register(self.fd, selectors.EVENT_WRITE)
        else:
            stdin.close()

    def write(self, sel: selectors.BaseSelector) -> None:
        """Write one chunk; close stdin once all is written or the child stopped reading."""
        try:
            written = os.write(self.fd, self.rest[:_CHUNK])
            self.rest = self.rest[written:]
        except BlockingIOError:
            return
        except (BrokenPipeError, OSError):
            self.rest = self.rest[:0]
        if not self.rest and self.stream is not None:
            sel.unregister(self.fd)
            self.stream.close()

    def close(self) -> None:
        """Close stdin if the loop ended before all was written (deadline, breach, child gone)."""
        if self.stream is not None and not self.stream.closed:
            with contextlib.suppress(OSError):
                self.stream.close()


class _Sink:
    """What one of the child's output pipes wrote, kept up to its cap: reading stops at the cap."""

    def __init__(self, stream: IO[bytes], cap: int, breach: Breach) -> None:
        self.fd = stream.fileno()
        self.cap = cap
        self.breach = breach
        self.data = bytearray()
        os.set_blocking(self.fd, False)

    def read(self, sel: selectors.BaseSelector) -> Breach | None:
        """Read one chunk; the breach of this pipe's cap once it is passed (the excess is dropped)."""
        try:
            chunk = os.read(self.fd, _CHUNK)
        except BlockingIOError:
            return None
        if not chunk:
            sel.unregister(self.fd)
            return None
        self.data += chunk
        if len(self.data) <= self.cap:
            return None
        del self.data[self.cap :]
        return self.breach


class _Watch:
    """The deadline, checked every turn; CPU time, the process count and the child's exit, read every
    :data:`_LIMIT_CHECK_S` only (each read costs a cgroup file or a wait call)."""

    def __init__(
        self,
        deadline: float,
        exited: Callable[[], bool],
        over_cpu: Callable[[], bool],
        over_processes: Callable[[], bool],
    ) -> None:
        self.deadline = deadline
        self._exited, self._over_cpu, self._over_processes = exited, over_cpu, over_processes
        self._next_check = 0.0
        self._exit_seen: float | None = None

    def breach(self, now: float) -> Breach | None:
        """The limit passed by ``now``, if any; notes the child's exit on the way."""
        if now >= self.deadline:
            return Breach.TIMEOUT
        if now < self._next_check:
            return None
        self._next_check = now + _LIMIT_CHECK_S
        if self._over_cpu():
            return Breach.CPU
        if self._over_processes():
            return Breach.PROCESSES
        if self._exit_seen is None and self._exited():
            self._exit_seen = now
        return None

    def drained(self, now: float) -> bool:
        """The child exited over :data:`_DRAIN_AFTER_EXIT_S` ago: whatever still holds the pipes is a
        leftover to be killed, not worth waiting for."""
        return self._exit_seen is not None and now - self._exit_seen > _DRAIN_AFTER_EXIT_S


def _serve_ready(sel: selectors.BaseSelector, feed: _Feed, sinks: dict[int, _Sink], timeout: float) -> Breach | None:
    """One select: feed stdin, read stdout and stderr; the cap a read passed, if any."""
    for key, _ in sel.select(timeout):
        if key.fd == feed.fd:
            feed.write(sel)
            continue
        breach = sinks[key.fd].read(sel)
        if breach is not None:
            return breach
    return None


def exchange(
    *,
    stdin: IO[bytes] | None,
    stdout: IO[bytes],
    stderr: IO[bytes],
    payload: bytes,
    deadline: float,
    max_stdout: int,
    max_stderr: int,
    exited: Callable[[], bool],
    over_cpu: Callable[[], bool] = lambda: False,
    over_processes: Callable[[], bool] = lambda: False,
    started: float | None = None,
) -> Exchange:
    """Run the I/O loop; returns what was read and the first limit breached, if any."""
    started = time.monotonic() if started is None else started
    sel = selectors.DefaultSelector()
    out, err = _Sink(stdout, max_stdout, Breach.OUTPUT), _Sink(stderr, max_stderr, Breach.LOGS)
    sinks = {out.fd: out, err.fd: err}
    for fd in sinks:
        sel.register(fd, selectors.EVENT_READ)
    feed = _Feed(stdin, payload, sel)
    watch = _Watch(deadline, exited, over_cpu, over_processes)
    breach: Breach | None = None
    try:
        while breach is None and sinks.keys() & {k.fd for k in sel.get_map().values()}:
            now = time.monotonic()
            breach = watch.breach(now)
            if breach is not None or watch.drained(now):
                break
            breach = _serve_ready(sel, feed, sinks, min(deadline - now, _LIMIT_CHECK_S))
    finally:
        sel.close()
        feed.close()
    return Exchange(bytes(out.data), bytes(err.data), breach, time.monotonic() - started)
