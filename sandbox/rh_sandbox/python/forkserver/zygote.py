"""Host side of one group's fork server: start it in the strict sandbox, have it fork, stop it.

The control channel is a SOCK_SEQPACKET socketpair that carries two messages: ``spawn`` (with the
new child's request socket, its status pipe and the ``cgroup.procs`` files to join, as SCM_RIGHTS)
and ``kill``. A child says it is confined and waiting with one byte on its request socket. Runs never
go through the zygote: the host sends a run's request and stdio straight to its child and reads the
end from the status pipe (the zygote writes it when it reaps the child). Plugin dirs are bound
read-only at start, each as ``/plugins/<n>``; a run for a dir the zygote does not have gets a new
zygote (see :mod:`rh_sandbox.python.forkserver.servers`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import uuid

import msgspec

from rh_sandbox.linux.bwrap import start_sandboxed, strict_command
from rh_sandbox.linux.cgroups import RunCgroup
from rh_sandbox.linux.confinement import Confinement
from rh_sandbox.linux.layout import PLUGINS_MOUNT, RUNTIME_MOUNT, sandbox_environment
from rh_sandbox.python.forkserver.child import Child, Preload
from rh_sandbox.python.forkserver.plugin_dirs import PluginDir
from rh_sandbox.python.process import guest_rlimits
from rh_sandbox.python.runtime import GUEST_FLAGS, GuestRuntime
from rh_sandbox.types import SandboxError

__all__ = ["Zygote"]

_START_TIMEOUT_S = 15.0
_ZYGOTE_TMP_MB = 1


class Zygote:
    """One running fork server. Thread-safe ``spawn`` and ``kill``; ``close`` (idempotent) stops it
    and every child inside."""

    def __init__(
        self,
        runtime: GuestRuntime,
        confinement: Confinement,
        plugin_dirs: list[PluginDir],
        uid: int,
        *,
        group: str = "default",
        cgroup_fd: int | None = None,
    ) -> None:
        """``cgroup_fd``: a ``cgroup.procs`` file the zygote joins before anything else (its group's
        dir in the cpu hierarchy, where its children's run cgroups are); the caller closes it."""
        self.plugin_dirs = list(plugin_dirs)
        self.group = group
        self.uid = uid  # real uid (and gid) of the zygote and its children: its group's own
        self._inside = {d: f"{PLUGINS_MOUNT}/{n}" for n, d in enumerate(self.plugin_dirs)}
        self._lock = threading.Lock()  # guards the control channel (and ``dead``)
        self.dead = False
        self._closed = False
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        host_end, guest_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = host_end
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._proc = self._start(runtime, confinement, guest_end.fileno(), cgroup_fd)
        finally:
            guest_end.close()
        try:
            self._await_ready()
        except BaseException:
            self.close()
            raise

    # ---- start ----------------------------------------------------------------------------
    def _start(
        self, runtime: GuestRuntime, confinement: Confinement, control_fd: int, cgroup_fd: int | None
    ) -> subprocess.Popen[bytes]:
        cgroup_fds = [cgroup_fd] if cgroup_fd is not None else []
        args = {
            "site": f"{RUNTIME_MOUNT}/site",
            "control_fd": control_fd,
            "cgroup_fds": cgroup_fds,
            "seccomp": confinement.seccomp_file,
            "landlock_abi": confinement.landlock_abi,
            "env": sandbox_environment(),  # exactly: bwrap adds PWD
        }
        binds = [(str(runtime.root), RUNTIME_MOUNT)] + [(d.path, p) for d, p in self._inside.items()]
        guest = [runtime.interpreter, *GUEST_FLAGS, f"{RUNTIME_MOUNT}/site/_rh_zygote.py", json.dumps(args)]
        argv = strict_command(
            guest,
            uid=self.uid,
            ro_binds=binds,
            scratch_mb=_ZYGOTE_TMP_MB,
            env=sandbox_environment(),
            cap_add=["CAP_SYS_ADMIN"],  # inside its own user namespace only: per-child PID/mount ns
            interpreter=runtime.interpreter,
        )
        try:
            null = subprocess.DEVNULL
            return start_sandboxed(
                argv, stdin=null, stdout=null, stderr=self._stderr, pass_fds=[control_fd, *cgroup_fds]
            )
        except OSError as exc:
            raise SandboxError(f"cannot start the fork server: {exc}") from exc

    def _await_ready(self) -> None:
        self._control.settimeout(_START_TIMEOUT_S)
        try:
            data = self._control.recv(1 << 16)
        except (TimeoutError, OSError) as exc:
            raise SandboxError(f"fork server did not start: {exc}; stderr: {self.stderr_tail()}") from exc
        finally:
            self._control.settimeout(None)
        if not data or msgspec.json.decode(data).get("event") != "ready":
            raise SandboxError(f"fork server failed to start; stderr: {self.stderr_tail()}")

    def stderr_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            return self._stderr.read()[-limit:].decode("utf-8", "replace").strip()
        return ""

    # ---- children -----------------------------------------------------------------------
    def inside_path(self, plugin_dir: PluginDir) -> str | None:
        """Where this zygote's children see ``plugin_dir``, or None when it is not bound."""
        return self._inside.get(plugin_dir)

    def spawn(
        self, cgroup: RunCgroup | None, scratch_mb: int, *, preload: Preload | None = None, heap_bytes: int = 0
    ) -> Child:
        """Fork a child that joins ``cgroup`` at once, mounts a /tmp of ``scratch_mb``, confines itself
        and waits for a request. ``preload``: it also takes the rlimits of the run it is armed for,
        confines itself to that plugin and imports it, then faults in ``heap_bytes`` of Python heap
        for its run's objects (see ``_warm_heap`` in the zygote). The cgroup goes with the child;
        when the fork fails it is removed, and this raises OSError (BrokenPipeError when the zygote
        is gone)."""
        try:
            cgroup_fds = cgroup.open_procs() if cgroup is not None else []
        except OSError:
            if cgroup is not None:
                cgroup.close()
            raise
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        child = Child(uuid.uuid4().hex, host_end, status_r, cgroup, scratch_mb, preload=preload)
        try:
            self._send_spawn(child, heap_bytes, [child_end.fileno(), status_w, *cgroup_fds])
        except BaseException:
            child.close()
            if cgroup is not None:
                cgroup.close()
            raise
        finally:
            child_end.close()
            os.close(status_w)
            for fd in cgroup_fds:
                os.close(fd)
        return child

    def _send_spawn(self, child: Child, heap_bytes: int, fds: list[int]) -> None:
        preload = child.preload
        message = {
            "op": "spawn",
            "slot": child.slot,
            "scratch_bytes": child.scratch_mb * 1024 * 1024,
            "preload": None
            if preload is None
            else {
                "entry": preload.entry,
                "plugin_dir": preload.plugin_dir,
                "landlock": [list(rule) for rule in preload.landlock],
                "rlimits": guest_rlimits(preload.limits),  # before the import: it is the run's
                "heap_bytes": heap_bytes,
            },
        }
        with self._lock:
            if self.dead:
                raise BrokenPipeError("fork server has exited")
            try:
                socket.send_fds(self._control, [msgspec.json.encode(message)], fds)
            except OSError:
                self.dead = True
                raise

    def kill(self, child: Child) -> None:
        """SIGKILL the child, pid 1 of its PID namespace: everything in that namespace dies with it."""
        with self._lock, contextlib.suppress(OSError):
            if not self.dead:
                self._control.send(msgspec.json.encode({"op": "kill", "slot": child.slot}))

    # ---- stop -----------------------------------------------------------------------------
    def alive(self) -> bool:
        return not self.dead and self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Close the channel (the zygote exits), kill its sandbox, reap it. A second call does nothing."""
        with self._lock:
            self.dead = True
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_RDWR)
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # bwrap --die-with-parent takes the sandbox down
                proc.kill()
                proc.wait()
        with self._lock:
            self._control.close()
        self._stderr.close()
