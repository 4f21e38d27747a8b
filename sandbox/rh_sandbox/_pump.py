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
    out, err = bytearray(), bytearray()
    buffers = {
        stdout.fileno(): (out, max_stdout, Breach.OUTPUT),
        stderr.fileno(): (err, max_stderr, Breach.LOGS),
    }
    for stream in (stdout, stderr):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream.fileno(), selectors.EVENT_READ)
    view = memoryview(payload)
    stdin_fd = stdin.fileno() if stdin is not None else -1
    if stdin is not None:
        os.set_blocking(stdin.fileno(), False)
        if view:
            sel.register(stdin.fileno(), selectors.EVENT_WRITE)
        else:
            stdin.close()
    breach: Breach | None = None
    exit_seen: float | None = None
    next_cpu_check = 0.0
    try:
        while buffers.keys() & {k.fd for k in sel.get_map().values()}:
            now = time.monotonic()
            if now >= deadline:
                breach = Breach.TIMEOUT
                break
            if now >= next_cpu_check:
                next_cpu_check = now + _LIMIT_CHECK_S
                if over_cpu():
                    breach = Breach.CPU
                    break
                if over_processes():
                    breach = Breach.PROCESSES
                    break
                if exit_seen is None and exited():
                    exit_seen = now
            if exit_seen is not None and now - exit_seen > _DRAIN_AFTER_EXIT_S:
                break  # the child is gone; whatever still holds the pipes is a leftover to be killed
            timeout = min(deadline - now, _LIMIT_CHECK_S)
            for key, _ in sel.select(timeout):
                fd = key.fd
                if fd == stdin_fd and stdin is not None:
                    try:
                        written = os.write(fd, view[:_CHUNK])
                        view = view[written:]
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, OSError):
                        view = view[:0]
                    if not view:
                        sel.unregister(fd)
                        stdin.close()
                    continue
                buf, cap, kind = buffers[fd]
                try:
                    chunk = os.read(fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    continue
                buf += chunk
                if len(buf) > cap:
                    del buf[cap:]
                    breach = kind
                    break
            if breach is not None:
                break
    finally:
        sel.close()
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.close()
    return Exchange(bytes(out), bytes(err), breach, time.monotonic() - started)
