"""Each group's current fork server, and the runs in flight in each.

A zygote's mount namespace is fixed when it starts, so a run whose plugin dir it does not bind gets
a new server for the group; the old one is retired (nothing new is armed in it), finishes its runs
and stops when the last one ends."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from rh_sandbox.python.forkserver.plugin_dirs import PluginDir
from rh_sandbox.python.forkserver.pool import WaitingChildren
from rh_sandbox.python.forkserver.run_cgroups import thaw
from rh_sandbox.python.forkserver.zygote import Zygote
from rh_sandbox.types import SandboxError

__all__ = ["Groups", "Server"]


@dataclass(eq=False)
class Server:
    """One group's zygote and its waiting children: what a run of the group leases."""

    group: str
    zygote: Zygote
    children: WaitingChildren

    def serves(self, plugin_dir: PluginDir) -> bool:
        return self.zygote.alive() and self.zygote.inside_path(plugin_dir) is not None

    def stop(self) -> None:
        """Stop the zygote (its waiting children die with its sandbox) and remove their cgroups. A
        frozen child is thawed first: a frozen process cannot die, and its PID namespace's end (the
        zygote's sandbox's) would wait for it."""
        children = self.children.close()
        for child in children:
            if child.preload is not None and child.cgroup is not None:
                with contextlib.suppress(OSError):
                    thaw(child.cgroup)
        self.zygote.close()
        for child in children:
            child.close()
            if child.cgroup is not None:
                child.cgroup.close()


StartServer = Callable[[str, PluginDir, "Server | None"], Server]


class Groups:
    """The leases on servers. Its lock guards which server is each group's and how many runs each
    server has in flight; a per-group lock serialises starting a group's next server (seconds) without
    holding up the other groups."""

    def __init__(self, start: StartServer) -> None:
        self._start = start  # a new server for a group and plugin dir, binding what the old one did
        self._lock = threading.Lock()
        self._closed = False
        self._current: dict[str, Server] = {}
        self._runs: Counter[Server] = Counter()  # runs in flight, current and retired servers
        self._starting: dict[str, threading.Lock] = {}

    def acquire(self, group: str, plugin_dir: PluginDir) -> Server:
        """The group's server binding ``plugin_dir`` (started now if need be), leased for one run."""
        with self._lock:
            if self._closed:
                raise SandboxError("backend is closed")
            starting = self._starting.setdefault(group, threading.Lock())
        with starting:
            with self._lock:
                server = self._current.get(group)
            if server is None or not server.serves(plugin_dir):
                server = self._replace(group, server, self._start(group, plugin_dir, server))
            with self._lock:
                self._runs[server] += 1
            return server

    def _replace(self, group: str, old: Server | None, new: Server) -> Server:
        with self._lock:
            closed = self._closed
            if not closed:
                self._current[group] = new
            stop_old = old is not None and not closed and self._runs[old] == 0
        if closed:
            new.stop()
            raise SandboxError("backend is closed")
        if old is not None:
            old.children.retire()
            if stop_old:
                old.stop()
        return new

    def release(self, server: Server) -> None:
        """A run leased from ``server`` ended: stop the server if it was retired meanwhile and this
        was its last run."""
        with self._lock:
            if server not in self._runs:
                return  # closed meanwhile: close() stopped it
            self._runs[server] -= 1
            stop = self._runs[server] == 0 and self._current.get(server.group) is not server
            if self._runs[server] == 0:
                del self._runs[server]
        if stop:
            server.stop()

    def current(self, group: str) -> Server | None:
        with self._lock:
            return self._current.get(group)

    def running(self) -> int:
        """Groups whose current zygote runs (for tests and metrics)."""
        with self._lock:
            return sum(1 for s in self._current.values() if s.zygote.alive())

    def close(self) -> list[Server]:
        """Refuse new leases; hand over every server, current or retired, to be stopped (once: a
        second call returns none)."""
        with self._lock:
            self._closed = True
            servers = list(dict.fromkeys([*self._current.values(), *self._runs]))
            self._current.clear()
            self._runs.clear()
            return servers
