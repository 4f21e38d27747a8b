"""Long-lived wasm worker processes and the pool that hands them out, one run at a time each.

A worker serves one group only (runs of different groups never share a process). A worker that dies,
hangs past its deadline or is closed is killed and forgotten; the next run of its group starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rh_sandbox.guest.wire import HEADER
from rh_sandbox.linux.bwrap import bwrap_exit_code
from rh_sandbox.linux.cgroups import RunCgroup
from rh_sandbox.linux.layout import worker_environment
from rh_sandbox.types import IsolationLevel, SandboxError
from rh_sandbox.wasm._frames import MAX_FRAME_BYTES

__all__ = [
    "CommandWrapper",
    "PlainWorkers",
    "WorkerCommand",
    "WorkerDied",
    "WorkerLauncher",
    "WorkerPool",
    "WorkerProcess",
    "WorkerTimeout",
    "worker_command",
]

STARTUP_SECONDS = 20.0
_TMPFS = "/dev/shm"
_EXIT_SECONDS = 2.0  # after a sandboxed worker is killed, how long bwrap may take to exit
# What a worker sees of the host's environment: nothing but a locale.
CLEAN_ENV = worker_environment()


CommandWrapper = Callable[[list[str]], list[str]]


@dataclass
class WorkerCommand:
    """What starts one worker: its argv; the fds it inherits (closed by the caller once it started);
    the cgroup it joins before it reads a byte from the host (killed and removed with it)."""

    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    cgroup: RunCgroup | None = None

    def discard(self) -> None:
        """Free what the command holds, when no worker was started with it."""
        for fd in self.pass_fds:
            os.close(fd)
        if self.cgroup is not None:
            self.cgroup.close()


class WorkerLauncher(Protocol):
    """How a worker of a group is started (see :class:`PlainWorkers` and ``StrictWorkers``)."""

    sandboxed: bool  # the command is a bwrap sandbox that writes the worker's pid to ``info_fd``
    isolation: str  # what the runs of these workers report as their isolation

    def launch(self, group: str, info_fd: int | None, *, check_mb: int | None = None) -> WorkerCommand:
        """A serving worker's command; with ``check_mb``, a one-shot module check's (``--validate``)
        under that many MiB of data, without the compiled-module cache."""

    def close(self) -> None:
        """The backend closed, its workers stopped: remove what the launches shared (the groups'
        cgroup dirs). The launcher stays usable: a backend closes the one it was given."""


def worker_command(cache_dir: str | None, data_mb: int = 4096) -> list[str]:
    """The argv of one worker at the basic level (the strict level's is ``StrictWorkers.command``);
    see docs/wasm-abi.md for what the worker needs."""
    argv = [sys.executable, "-I", "-m", "rh_sandbox.wasm._worker", "--data-mb", str(data_mb)]
    if cache_dir is not None:
        argv += ["--cache-dir", os.fspath(cache_dir)]
    return argv


@dataclass(frozen=True)
class PlainWorkers:
    """Workers as the host's own uid, in the host's namespaces (the basic level).

    wrap: turns the worker argv into the argv actually executed (a debugger, ``env -i``)."""

    cache_dir: str | None = None
    data_mb: int = 4096
    wrap: CommandWrapper | None = None
    sandboxed = False
    isolation = IsolationLevel.BASIC.value

    def launch(self, group: str, info_fd: int | None, *, check_mb: int | None = None) -> WorkerCommand:
        if check_mb is None:
            argv = worker_command(self.cache_dir, self.data_mb)
        else:
            argv = [*worker_command(None, check_mb), "--validate"]
        return WorkerCommand(self.wrap(argv) if self.wrap is not None else argv)

    def close(self) -> None:
        """Nothing shared between launches."""


class WorkerDied(SandboxError):
    """The worker exited or closed its pipe mid-request."""


class WorkerTimeout(SandboxError):
    """The worker did not answer before the deadline (it is killed by the caller)."""


class WorkerProcess:
    """One worker: a subprocess in its own session and scratch cwd, spoken to over two pipes.

    A sandboxed worker is pid 1 of its sandbox (bwrap's ``--as-pid-1``) and bwrap's child: it is
    killed by its own pid, and bwrap then exits (killing bwrap instead leaves the worker to die of
    ``--die-with-parent``, orphaned). The launcher must start it from a long-lived thread: bwrap's
    ``--die-with-parent`` fires when the *thread* that forked it ends.
    """

    def __init__(self, launcher: WorkerLauncher, group: str, *, check_mb: int | None = None) -> None:
        self.group = group
        self.known: set[str] = set()  # module hashes this worker has already been sent
        self.sandboxed = launcher.sandboxed
        self._guest_pid: int | None = None  # a sandboxed worker's own pid (bwrap's is self.pid)
        # cwd of the worker and home of the guests' stdout/stderr files: on tmpfs when there is one
        # (a sandboxed worker gets a private /tmp instead; its stderr log stays here).
        self._scratch = Path(tempfile.mkdtemp(prefix="rh-wasm-worker-", dir=_TMPFS if os.path.isdir(_TMPFS) else None))
        self._errlog = open(self._scratch / "worker.err", "w+b")  # noqa: SIM115 - owned until close()
        info_r, info_w = os.pipe2(os.O_CLOEXEC) if self.sandboxed else (None, None)
        try:
            self._proc, launch = self._start(launcher, info_w, check_mb)
        except (OSError, SandboxError) as exc:
            self._errlog.close()
            shutil.rmtree(self._scratch, ignore_errors=True)
            _close_fds(info_r, info_w)
            raise SandboxError(f"cannot start wasm worker: {exc}") from exc
        self._cgroup = launch.cgroup
        _close_fds(*launch.pass_fds, info_w)  # the worker holds its own copies now
        self._stdin = self._proc.stdin
        self._stdout = self._proc.stdout
        if self._stdin is None or self._stdout is None:
            raise SandboxError("wasm worker started without pipes")
        self._wfd = self._stdin.fileno()
        self._rfd = self._stdout.fileno()
        self.ready = self._await_ready(info_r)

    def _start(
        self, launcher: WorkerLauncher, info_w: int | None, check_mb: int | None
    ) -> tuple[subprocess.Popen[bytes], WorkerCommand]:
        """Launch the worker's command; if the process does not start, free what the launch holds."""
        launch = launcher.launch(self.group, info_w, check_mb=check_mb)
        try:
            proc = subprocess.Popen(
                launch.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errlog,
                env=CLEAN_ENV,
                cwd="/" if self.sandboxed else self._scratch,
                close_fds=True,
                pass_fds=(*launch.pass_fds, *(() if info_w is None else (info_w,))),
                start_new_session=True,
            )
        except (OSError, SandboxError):
            launch.discard()
            raise
        return proc, launch

    def _await_ready(self, info_r: int | None) -> bytes:
        """The worker's ready frame (and, sandboxed, its own pid from bwrap's info); a worker that does
        not get there is killed."""
        try:
            if info_r is not None:
                self._guest_pid = _sandboxed_pid(info_r, time.monotonic() + STARTUP_SECONDS)
            return self.receive(time.monotonic() + STARTUP_SECONDS)
        except (WorkerDied, WorkerTimeout) as exc:
            detail = self.error_tail()
            self.kill()
            raise SandboxError(f"wasm worker did not start: {exc}; {detail}") from exc
        except BaseException:
            self.kill()  # whatever went wrong, no worker is left running unowned
            raise
        finally:  # only now: bwrap gets SIGPIPE if the read end closes while it still writes its info
            if info_r is not None:
                os.close(info_r)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` (a process as the host sees it, e.g. an egress broker's peer) is this worker."""
        return pid == (self._proc.pid if self._guest_pid is None else self._guest_pid)

    def send(self, frame: bytes) -> None:
        """Write a ready-made frame (header included)."""
        view = memoryview(frame)
        try:
            while view:
                view = view[os.write(self._wfd, view) :]
        except OSError as exc:  # BrokenPipeError: it died while idle
            raise WorkerDied(f"worker pipe closed: {exc}") from exc

    def receive(self, deadline: float) -> bytes:
        """One frame's body, waiting until ``deadline`` (time.monotonic) at most."""
        (size,) = HEADER.unpack(self._read(HEADER.size, deadline))
        if size > MAX_FRAME_BYTES:  # the worker's own check, on the host's side of the pipe too
            raise WorkerDied(f"worker announced a frame of {size} bytes (at most {MAX_FRAME_BYTES})")
        return self._read(size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        poller = select.poll()
        poller.register(self._rfd, select.POLLIN)
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000.0):
                raise WorkerTimeout("no answer before the deadline")
            chunk = os.read(self._rfd, min(size, 1 << 20))
            if not chunk:
                raise WorkerDied(self.exit_description())
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def exit_description(self) -> str:
        try:
            code = self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "worker closed its pipe"
        if self.sandboxed:
            code = bwrap_exit_code(code) or 0  # bwrap reports the worker's death by signal N as 128+N
        if code < 0:
            try:
                return f"worker killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"worker killed by signal {-code}"
        return f"worker exited with status {code}"

    def error_tail(self, size: int = 600) -> str:
        """The end of the worker's own stderr (a wasmtime panic message, a Python traceback)."""
        try:
            self._errlog.flush()
            self._errlog.seek(max(0, self._errlog.seek(0, os.SEEK_END) - size))
            return self._errlog.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def signal_kill(self) -> None:
        """SIGKILL the worker (in its sandbox, or its session) without touching the pipes (safe while
        another thread reads)."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self._guest_pid is not None:  # bwrap runs, so has not reaped it: the pid is still the worker's
                    os.kill(self._guest_pid, signal.SIGKILL)
                else:
                    os.killpg(self._proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the worker, reap it, and free its pipes and scratch dir."""
        self.signal_kill()
        try:
            self._proc.wait(timeout=_EXIT_SECONDS)
        except subprocess.TimeoutExpired:  # bwrap itself hangs: --die-with-parent ends the worker
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._cleanup()

    def close(self) -> None:
        """Ask politely (EOF on its stdin), then kill."""
        if self._proc.poll() is None:
            try:
                self._stdin.close()
                self._proc.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def _cleanup(self) -> None:
        for pipe in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        self._errlog.close()
        shutil.rmtree(self._scratch, ignore_errors=True)
        if self._cgroup is not None:  # kills anything the worker left (nothing: it was pid 1) and removes it
            self._cgroup.close()


def _close_fds(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


def _sandboxed_pid(fd: int, deadline: float) -> int:
    """The ``child-pid`` of bwrap's ``--info-fd`` JSON, written before the worker starts (in several
    writes: read until it parses)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    while True:
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000.0):
            raise WorkerTimeout("the sandbox did not start before the deadline")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise WorkerDied("the sandbox exited before it started the worker")
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:
            continue  # not all of it yet


class WorkerPool:
    """At most ``size`` workers in all; idle ones are kept per group and reused."""

    def __init__(self, spawn: Callable[[str], WorkerProcess], size: int) -> None:
        if size < 1:
            raise ValueError("a wasm worker pool needs at least one worker")
        self._spawn = spawn
        self._size = size
        self._cond = threading.Condition()
        self._idle: dict[str, list[WorkerProcess]] = {}
        self._busy: set[WorkerProcess] = set()
        self._count = 0
        self._closed = False

    def acquire(self, group: str) -> WorkerProcess:
        dead: list[WorkerProcess] = []
        try:
            return self._acquire(group, dead)
        finally:
            for worker in dead:  # died while idle (killed from outside): reaped, never handed out
                worker.kill()

    def _acquire(self, group: str, dead: list[WorkerProcess]) -> WorkerProcess:
        victim: WorkerProcess | None = None
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxError("the wasm backend is closed")
                idle = self._idle.get(group)
                if idle:
                    worker = idle.pop()
                    if not worker.alive():
                        dead.append(worker)
                        self._count -= 1
                        continue
                    self._busy.add(worker)
                    return worker
                if self._count < self._size:
                    self._count += 1
                    break
                victim = self._take_idle_of_other_group()
                if victim is not None:
                    break
                self._cond.wait()
        if victim is not None:
            victim.close()
        try:
            worker = self._spawn(group)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._busy.add(worker)
            if self._closed:
                self._busy.discard(worker)
                self._count -= 1
                worker.kill()
                raise SandboxError("the wasm backend is closed")
        return worker

    def _take_idle_of_other_group(self) -> WorkerProcess | None:
        for workers in self._idle.values():
            if workers:
                return workers.pop(0)
        return None

    def release(self, worker: WorkerProcess, healthy: bool) -> None:
        with self._cond:
            self._busy.discard(worker)
            keep = healthy and not self._closed and worker.alive()
            if keep:
                self._idle.setdefault(worker.group, []).append(worker)
            else:
                self._count -= 1
            self._cond.notify()
        if not keep:
            worker.kill()

    def warm(self, group: str, count: int) -> None:
        """Start up to ``count`` idle workers for ``group`` ahead of the first run."""
        started = [self.acquire(group) for _ in range(count)]
        for worker in started:
            self.release(worker, healthy=True)

    def workers(self) -> list[WorkerProcess]:
        with self._cond:
            return [*self._busy, *(w for ws in self._idle.values() for w in ws)]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle = [w for ws in self._idle.values() for w in ws]
            busy = list(self._busy)
            self._idle.clear()
            self._count -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.close()
        for worker in busy:  # their run() sees a dead worker and releases it
            worker.signal_kill()
