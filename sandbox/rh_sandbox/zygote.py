"""Host side of one group's fork server: start it in the strict sandbox, talk to it, stop it.

The control channel is a SOCK_SEQPACKET socketpair: one JSON message per request, the run's
stdin/stdout/stderr and ``cgroup.procs`` descriptors attached (SCM_RIGHTS); one JSON message back
per finished run. A reader thread routes replies to the waiting runs. Plugin dirs are bound
read-only at start, each as ``/plugins/<n>``; a run for a dir the zygote does not have gets a new
zygote (see :mod:`rh_sandbox.forkserver`).
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
from collections import deque
from dataclasses import dataclass, field

from rh_sandbox.bwrap import strict_command
from rh_sandbox.cgroups import RunCgroup
from rh_sandbox.confinement import Confinement
from rh_sandbox.layout import PLUGINS_MOUNT, RUNTIME_MOUNT, sandbox_environment
from rh_sandbox.runtime import GuestRuntime
from rh_sandbox.types import SandboxError

__all__ = ["PluginDir", "Zygote", "ZygoteExit"]

_START_TIMEOUT_S = 15.0
_ZYGOTE_TMP_MB = 1


@dataclass(frozen=True)
class PluginDir:
    """A plugin dir as the zygote binds it: a replaced dir (new inode) needs a new bind."""

    path: str
    device: int
    inode: int

    @classmethod
    def of(cls, path: str) -> PluginDir:
        real = os.path.realpath(path)
        st = os.stat(real)
        return cls(real, st.st_dev, st.st_ino)

    def still_there(self) -> bool:
        try:
            return PluginDir.of(self.path) == self
        except OSError:
            return False


@dataclass
class ZygoteExit:
    """How the run's reaper (process A) ended: its code mirrors the handler process's."""

    code: int | None = None
    maxrss_kb: int = 0
    lost: bool = False  # the armed child was gone: nothing ran, the run may be retried
    done: threading.Event = field(default_factory=threading.Event)


class Zygote:
    """One running fork server. Thread-safe ``submit``; ``close`` stops it and every run inside."""

    def __init__(
        self,
        runtime: GuestRuntime,
        confinement: Confinement,
        plugin_dirs: list[PluginDir],
    ) -> None:
        self.plugin_dirs = list(plugin_dirs)
        self._inside = {d: f"{PLUGINS_MOUNT}/{n}" for n, d in enumerate(self.plugin_dirs)}
        self._lock = threading.Lock()
        self._pending: dict[str, ZygoteExit] = {}
        self.active = 0  # runs in flight (managed by the backend)
        self.slots: deque[tuple[str, RunCgroup | None]] = deque()  # armed, unclaimed (managed by the backend)
        self.retired = False
        self.dead = False
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        host_end, guest_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = host_end
        try:
            self._proc = self._start(runtime, confinement, guest_end.fileno())
        finally:
            guest_end.close()
        try:
            self._await_ready()
        except BaseException:
            self.close()
            raise
        self._reader = threading.Thread(target=self._read_events, name="rh-zygote-reader", daemon=True)
        self._reader.start()

    # ---- start ----------------------------------------------------------------------------
    def _start(self, runtime: GuestRuntime, confinement: Confinement, control_fd: int) -> subprocess.Popen[bytes]:
        args = {
            "site": f"{RUNTIME_MOUNT}/site",
            "control_fd": control_fd,
            "seccomp": confinement.seccomp_file,
            "landlock_abi": confinement.landlock_abi,
        }
        binds = [(str(runtime.root), RUNTIME_MOUNT)] + [(d.path, p) for d, p in self._inside.items()]
        guest = [runtime.interpreter, "-I", "-S", "-B", f"{RUNTIME_MOUNT}/site/_rh_zygote.py", json.dumps(args)]
        argv = strict_command(
            guest,
            ro_binds=binds,
            scratch_mb=_ZYGOTE_TMP_MB,
            env=sandbox_environment(),
            cap_add=["CAP_SYS_ADMIN"],  # inside its own user namespace only: per-child PID/mount ns
            interpreter=runtime.interpreter,
        )
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                start_new_session=True,
                close_fds=True,
                pass_fds=[control_fd],
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
        if not data or json.loads(data).get("event") != "ready":
            raise SandboxError(f"fork server failed to start; stderr: {self.stderr_tail()}")

    def stderr_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError):
            self._stderr.seek(0)
            return self._stderr.read()[-limit:].decode("utf-8", "replace").strip()
        return ""

    # ---- runs -----------------------------------------------------------------------------
    def inside_path(self, plugin_dir: PluginDir) -> str | None:
        """Where this zygote's children see ``plugin_dir``, or None when it is not bound."""
        return self._inside.get(plugin_dir)

    def submit(self, run_id: str, request: dict, fds: list[int]) -> ZygoteExit:
        """Hand one run to the zygote. Raises OSError when the zygote is gone."""
        ending = ZygoteExit()
        with self._lock:
            if self.dead:
                raise BrokenPipeError("fork server has exited")
            self._pending[run_id] = ending
            try:
                socket.send_fds(self._control, [json.dumps({"id": run_id, **request}).encode()], fds)
            except OSError:
                self._pending.pop(run_id, None)
                self.dead = True
                raise
        return ending

    def arm(self, slot: str, cgroup_fds: list[int]) -> None:
        """Have a child forked and waiting in the slot's cgroups. Raises OSError when the zygote is gone."""
        with self._lock:
            if self.dead:
                raise BrokenPipeError("fork server has exited")
            socket.send_fds(self._control, [json.dumps({"op": "arm", "slot": slot}).encode()], cgroup_fds)

    def kill_run(self, run_id: str) -> None:
        """Ask the zygote to SIGKILL the run's reaper (its PID namespace, and so the handler, dies)."""
        with self._lock, contextlib.suppress(OSError):
            if not self.dead:
                self._control.send(json.dumps({"op": "kill", "id": run_id}).encode())

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._pending.pop(run_id, None)

    def _read_events(self) -> None:
        while True:
            try:
                data = self._control.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            event = json.loads(data)
            if event.get("event") != "exit":
                continue
            with self._lock:
                ending = self._pending.pop(event["id"], None)
            if ending is not None:
                ending.code = event["code"]
                ending.maxrss_kb = event.get("maxrss_kb", 0)
                ending.lost = bool(event.get("lost"))
                ending.done.set()
        with self._lock:  # the zygote died: so did every run inside its sandbox
            self.dead = True
            pending, self._pending = self._pending, {}
        for ending in pending.values():
            ending.code = -signal.SIGKILL
            ending.done.set()

    # ---- stop -----------------------------------------------------------------------------
    def alive(self) -> bool:
        return not self.dead and self._proc.poll() is None

    def close(self) -> None:
        """Close the channel (the zygote exits), kill its sandbox, reap it."""
        self.dead = True
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)
        proc = getattr(self, "_proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # bwrap --die-with-parent takes the sandbox down
                proc.kill()
                proc.wait()
        reader = getattr(self, "_reader", None)
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=2)
        self._control.close()
        self._stderr.close()
