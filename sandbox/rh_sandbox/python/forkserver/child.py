"""One child a zygote forked ahead of a run: the host's ends of it, what it was armed for, and the
states it goes through in the pool of waiting children."""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import select
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rh_sandbox.linux.cgroups import RunCgroup
from rh_sandbox.types import Limits

__all__ = ["READY_BYTE", "Child", "ChildState", "Preload"]

READY_BYTE = b"r"  # what a child sends on its request socket once it is confined and waiting


class ChildState(enum.Enum):
    """Where a waiting child is: ARMING -> PROMOTING -> READY -> TAKEN. A run may also take an
    ARMING child armed for any plugin (it is further along than a fork now). A child taken from the
    pool other than by a run (stale, evicted, never ready, its zygote stopped) is killed."""

    ARMING = "arming"  # forked; confining itself (and importing its plugin); not yet said it waits
    PROMOTING = "promoting"  # said it waits (or its time is up): its cgroup's counters are being reset
    READY = "ready"  # confined and waiting, its counters reset: offered to runs
    TAKEN = "taken"  # out of the pool: a run's, or killed


def ready_among(watched: Sequence[Any], timeout_s: float | None) -> list[Any]:
    """Those of ``watched`` (fds or objects with ``fileno()``) readable within ``timeout_s`` (None:
    no limit). ``select.select`` would do, but fails on fd numbers of 1024 and up, which a host
    whose fd limit was raised reaches under load. A closed fd raises OSError, as select does."""
    by_fd = {w if isinstance(w, int) else w.fileno(): w for w in watched}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    events = poller.poll(None if timeout_s is None else timeout_s * 1000)
    if any(event & select.POLLNVAL for _, event in events):
        raise OSError(errno.EBADF, "a watched fd was closed")
    return [by_fd[fd] for fd, _ in events]


@dataclass(frozen=True)
class Preload:
    """A plugin an armed child imports before its request: where the zygote's children see it, its
    entry, its Landlock rules, the stat of its dir and entry module when it was armed (an edit in
    place changes the signature, and the children armed before it are discarded unused), and the
    limits of the run it is armed for: its rlimits and cgroup hold from before the import, and
    only a run with these limits takes it (rlimits can be lowered, never raised again)."""

    plugin_dir: str
    entry: str
    landlock: tuple[tuple[str, int], ...]
    signature: tuple[int, ...]
    limits: Limits

    def same_plugin(self, other: Preload) -> bool:
        return (self.plugin_dir, self.entry) == (other.plugin_dir, other.entry)


@dataclass(eq=False)
class Child:
    """One forked child: the host's ends of its request socket and of its status pipe, and the
    cgroup it joined at once (it goes with the child: recycled or removed when the child is let go)."""

    slot: str
    request: socket.socket  # send the run's request and stdio here (SCM_RIGHTS), once
    status_fd: int  # the zygote writes "<exit code> <maxrss kB>" here when it has reaped the child
    cgroup: RunCgroup | None
    scratch_mb: int  # the size of the /tmp it mounted before its request
    preload: Preload | None = None  # the plugin it imports while it waits (None: any plugin's run)
    deadline: float = 0.0  # (monotonic) by when an arming child must have said it waits, or be discarded
    answered: bool = False  # its run ended at its reply; the host killed it and awaits its end later
    said_ready: bool = False  # its "confined and waiting" byte was read (its counters were reset then)
    _close_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def await_ready(self, timeout_s: float) -> bool:
        """Wait for the child's "confined and waiting" byte; False when it died or took too long."""
        if not self.said_ready:
            try:
                if ready_among([self.request], timeout_s):
                    self.said_ready = self.request.recv(16) == READY_BYTE
            except (OSError, ValueError):
                self.said_ready = False
        return self.said_ready

    def close(self) -> None:
        """Close the host's ends (idempotent: a closed fd number may belong to another file by now)."""
        with self._close_lock:
            self.request.close()
            status_fd, self.status_fd = self.status_fd, -1
        if status_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(status_fd)
