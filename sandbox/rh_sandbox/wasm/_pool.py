"""Long-lived wasm worker processes and the pool that hands them out, one run at a time each.

A worker serves one group only (runs of different groups never share a process). A worker that dies,
hangs past its deadline or is closed is killed and forgotten; the next run of its group starts a new one.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rh_sandbox.types import SandboxError

__all__ = ["WorkerDied", "WorkerPool", "WorkerProcess", "WorkerTimeout"]

STARTUP_SECONDS = 20.0
_TMPFS = "/dev/shm"
_HEADER_BYTES = 4
# What a worker sees of the host's environment: nothing but a locale.
CLEAN_ENV = {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}


class WorkerDied(Exception):
    """The worker exited or closed its pipe mid-request."""


class WorkerTimeout(Exception):
    """The worker did not answer before the deadline (it is killed by the caller)."""


class WorkerProcess:
    """One worker: a subprocess in its own session and scratch cwd, spoken to over two pipes."""

    def __init__(self, argv: Sequence[str], group: str) -> None:
        self.group = group
        self.known: set[str] = set()  # module hashes this worker has already been sent
        # cwd of the worker and home of the guests' stdout/stderr files: on tmpfs when there is one.
        self._scratch = Path(tempfile.mkdtemp(prefix="rh-wasm-worker-", dir=_TMPFS if os.path.isdir(_TMPFS) else None))
        self._errlog = open(self._scratch / "worker.err", "w+b")  # noqa: SIM115 - owned until close()
        try:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errlog,
                env=CLEAN_ENV,
                cwd=self._scratch,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            self._errlog.close()
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise SandboxError(f"cannot start wasm worker {argv[0]!r}: {exc}") from exc
        self._stdin = self._proc.stdin
        self._stdout = self._proc.stdout
        if self._stdin is None or self._stdout is None:
            raise SandboxError("wasm worker started without pipes")
        self._wfd = self._stdin.fileno()
        self._rfd = self._stdout.fileno()
        try:
            self.ready = self.receive(time.monotonic() + STARTUP_SECONDS)
        except (WorkerDied, WorkerTimeout) as exc:
            detail = self.error_tail()
            self.kill()
            raise SandboxError(f"wasm worker did not start: {exc}; {detail}") from exc

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

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
        header = self._read(_HEADER_BYTES, deadline)
        return self._read(int.from_bytes(header, "big"), deadline)

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
        """SIGKILL the worker's session without touching the pipes (safe while another thread reads)."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the worker's whole session, reap it, and free its pipes and scratch dir."""
        self.signal_kill()
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
