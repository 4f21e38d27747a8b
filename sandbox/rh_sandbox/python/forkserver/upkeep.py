"""Background upkeep of every server: arm children ahead of runs, offer each to runs once it says it
waits, and let go of ended runs' children (close their ends, recycle their cgroups). One thread,
woken through a pipe, waiting on all of these at once, so no child's set-up or end holds up another's."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from rh_sandbox.python.forkserver.child import Child, ChildState, ready_among
from rh_sandbox.python.forkserver.run import EXIT_GRACE_S, readable
from rh_sandbox.python.forkserver.run_cgroups import RunCgroups, freeze, occupied
from rh_sandbox.python.forkserver.servers import Server
from rh_sandbox.python.forkserver.zygote import Zygote
from rh_sandbox.types import SandboxError

__all__ = ["Upkeep"]

_log = logging.getLogger("rh.sandbox")
_ARM_TIMEOUT_S = 5.0  # how long an armed child may take to confine itself and say it waits
_PRELOAD_TIMEOUT_S = 0.5  # ... and one that imports its plugin first (slower: that plugin is not preloaded)


class Upkeep:
    """Its lock guards its queues: servers to arm, children being armed, ended runs' children."""

    def __init__(self, cgroups: RunCgroups) -> None:
        self._cgroups = cgroups
        self._lock = threading.Lock()
        self._closed = False
        self._to_arm: list[Server] = []
        self._watched: dict[Child, Server] = {}  # arming children, until they say they wait
        self._to_release: list[Child] = []  # ended runs' children: close, recycle their cgroups
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._loop, name="rh-forkserver-upkeep", daemon=True)
        self._thread.start()

    # ---- arming ---------------------------------------------------------------------------
    def arm(self, server: Server) -> None:
        """Top ``server`` up in the background."""
        with self._lock:
            if not self._closed:
                self._to_arm.append(server)
        self._wake()

    def top_up(self, server: Server) -> None:
        """Fork what ``server`` lacks of waiting children, without waiting for them: they confine
        themselves in parallel, and the loop offers each to runs once it says it waits. Until then a
        run may still take a generic one. (Called from this thread, and by a run that started a server.)"""
        while not server.zygote.dead:
            order = server.children.next_to_arm()
            if order is None:
                break
            try:
                if order.preload is None:
                    cgroup = self._cgroups.for_arming(server.group)
                else:  # it will run plugin code: under its run's limits, counters reset, from the start
                    cgroup = self._cgroups.for_run(server.group, order.preload.limits)
                child = server.zygote.spawn(
                    cgroup, order.scratch_mb, preload=order.preload, heap_bytes=order.heap_bytes
                )
            except OSError:
                break
            child.deadline = time.monotonic() + (_ARM_TIMEOUT_S if order.preload is None else _PRELOAD_TIMEOUT_S)
            if not server.children.add(child):  # retired meanwhile
                self.discard(server.zygote, child)
                break
            with self._lock:
                if self._closed:
                    break  # the backend is closing: stopping the server kills the child
                self._watched[child] = server
        self._wake()  # the loop watches the new children

    def _promote(self, server: Server, child: Child) -> None:
        """An arming child said it waits, or its time is up: offer it to runs, or discard it. A child
        for any run ran no plugin code: its cgroup's counters are reset (what its set-up used is not
        the run's). A child armed for a plugin imported it: it is frozen until a run claims it, and
        its counters are kept (the import is that run's, as if it had happened in the run)."""
        if not server.children.begin_promote(child):
            return  # a run took it meanwhile, or it was discarded
        ready = child.await_ready(0)
        if ready and child.cgroup is not None:
            try:
                if child.preload is None:
                    child.cgroup.reset_usage()
                else:
                    ready = freeze(child.cgroup)
            except OSError:
                ready = False
        elif child.preload is not None:
            ready = False  # plugin code that no freezer could stop: never left waiting
        if not server.children.end_promote(child, ready=ready, zygote_alive=not server.zygote.dead):
            self.discard(server.zygote, child)

    # ---- letting go -----------------------------------------------------------------------
    def discard(self, zygote: Zygote, child: Child) -> None:
        zygote.kill(child)
        self.let_go(child)

    def let_go(self, child: Child) -> None:
        """Kill now whatever of the run is left (nothing may outlive its run); close the child's
        ends and recycle its cgroup in the background, after the result is returned. An answered
        child was killed already: its end is awaited in the background."""
        if not child.answered and child.cgroup is not None and occupied(child.cgroup):
            child.cgroup.kill()
        with self._lock:
            if not self._closed:
                self._to_release.append(child)
                self._wake_locked()
                return
        self._release(child)

    def _release(self, child: Child, *, reaped: bool = False, grace_s: float = EXIT_GRACE_S) -> None:
        """Close the child's ends and recycle its cgroup. An answered child was SIGKILLed: its cgroup
        is reused only once the zygote has reaped it (``reaped``: its status pipe was readable, or
        becomes so within ``grace_s``) or it has been freeze-killed."""
        if child.answered and child.cgroup is not None and not (reaped or readable(child.status_fd, grace_s)):
            child.cgroup.kill()  # SIGKILLed, yet not reaped in time: make sure before the cgroup is reused
        child.close()
        if child.cgroup is not None:
            self._cgroups.recycle(child.cgroup)

    # ---- the loop -------------------------------------------------------------------------
    def _wake(self) -> None:
        with self._lock:
            self._wake_locked()

    def _wake_locked(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):  # full: it is awake already
                os.write(self._wake_w, b"w")

    def _loop(self) -> None:
        exiting: dict[Child, float] = {}  # answered runs' children, SIGKILLed: release when reaped
        while True:
            with self._lock:
                if self._closed:
                    self._to_release += exiting  # close() releases them
                    return
                to_arm, self._to_arm = self._to_arm, []
                ended, self._to_release = self._to_release, []
            try:
                self._step(exiting, ended, to_arm)
            except Exception:  # a bug here must not end the upkeep: runs would fork on request forever
                _log.exception("fork server upkeep failed; going on")
                time.sleep(0.1)

    def _step(self, exiting: dict[Child, float], ended: list[Child], to_arm: list[Server]) -> None:
        now = time.monotonic()
        for child in ended:
            if child.answered:
                exiting[child] = now + EXIT_GRACE_S
            else:
                self._release(child)
        for server in dict.fromkeys(to_arm):
            try:
                self.top_up(server)
            except SandboxError as exc:
                _log.warning("cannot arm the fork server: %s", exc)
        arming = self._arming()
        ready = self._wait(arming, exiting)
        now = time.monotonic()
        for child, server in arming.items():
            if child.request in ready or now >= child.deadline:
                with self._lock:
                    self._watched.pop(child, None)
                self._promote(server, child)
        for child, until in list(exiting.items()):
            if child.status_fd in ready or now >= until:
                del exiting[child]
                # its grace has passed already: waiting it out again would hold up every group's upkeep
                self._release(child, reaped=child.status_fd in ready, grace_s=0.0)

    def _wait(self, arming: dict[Child, Server], exiting: dict[Child, float]) -> set[object]:
        """Until the first of: a wake-up, an arming child says it waits, an answered child is reaped,
        a deadline. Empty when a child was closed meanwhile (the next round forgets it)."""
        deadlines = [c.deadline for c in arming] + list(exiting.values())
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        try:
            watched = [self._wake_r, *(c.request for c in arming), *(c.status_fd for c in exiting)]
            ready = set(ready_among(watched, timeout))
        except (OSError, ValueError):
            return set()
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)
        return ready

    def _arming(self) -> dict[Child, Server]:
        """The watched children still arming in their pools (forget the others: claimed, discarded)."""
        with self._lock:
            watched = dict(self._watched)
        gone = [c for c, s in watched.items() if s.children.state(c) is not ChildState.ARMING or c.request.fileno() < 0]
        with self._lock:
            for child in gone:
                self._watched.pop(child, None)
                watched.pop(child)
        return watched

    def close(self) -> None:
        """Stop the thread and release what it held (idempotent); from now on ``let_go`` releases at once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake_locked()
        self._thread.join()
        with self._lock:
            ended, self._to_release = self._to_release, []
            self._watched.clear()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        for child in ended:
            self._release(child)
