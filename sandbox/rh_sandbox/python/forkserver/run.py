"""One run in a claimed child: hand it the request and its stdio, exchange stdin/stdout/stderr under
caps and a deadline (the same pump as the cold path), learn how it ended, classify with the same
rules as the cold path. Nothing here outlives the run but the child's teardown (see ``answered``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import time
from typing import IO

import msgspec

from rh_sandbox._pump import Exchange, exchange
from rh_sandbox.classify import ReplyRefused, decode_attempt, run_result
from rh_sandbox.linux.cgroups import RunCgroup
from rh_sandbox.linux.uids import processes_of_uid
from rh_sandbox.python.forkserver.child import Child, ready_among
from rh_sandbox.python.forkserver.run_cgroups import kill_members
from rh_sandbox.python.forkserver.zygote import Zygote
from rh_sandbox.python.process import guest_rlimits
from rh_sandbox.types import RunResult, RunSpec
from rh_sdk.protocol import Encoding, Reply

__all__ = ["EXIT_GRACE_S", "ChildRun", "readable"]

EXIT_GRACE_S = 2.0  # after the pipes close, how long the zygote may take to report the child's end
_MEMFD_MIN_BYTES = 1 << 16  # invocations from this size go in a memfd, not a pipe
_FIRST_CHECK_S = 0.01  # the pump's first CPU and process-count checks come after this, not at once


class ChildRun:
    """``spec`` run with ``payload`` in ``child`` of ``zygote``, its plugin dir seen at ``inside``
    under ``landlock``. Raises BrokenPipeError when the child was gone before it got the request."""

    def __init__(
        self,
        zygote: Zygote,
        child: Child,
        spec: RunSpec,
        *,
        inside: str,
        landlock: tuple[tuple[str, int], ...],
        isolation: str,
    ) -> None:
        self.zygote = zygote
        self.child = child
        self.spec = spec
        self.inside = inside
        self.landlock = landlock
        self.isolation = isolation  # the label of the result, e.g. "strict+landlock+forkserver"

    def run(self, payload: bytes) -> RunResult:
        started = time.monotonic()
        stdin_w, stdout_r, stderr_r, rest = self._hand_over(payload)
        with (
            os.fdopen(stdin_w, "wb") if rest else contextlib.nullcontext() as stdin,
            os.fdopen(stdout_r, "rb") as out,
            os.fdopen(stderr_r, "rb") as err,
        ):
            io = self._exchange(stdin, out, err, rest, started)
        cgroup = self.child.cgroup
        reply = self._answered(io, self.spec.encoding, self.spec.limits.max_output_kb)
        if isinstance(reply, Reply):
            return self._result(io, 0, 0, cgroup, reply)
        code, maxrss_kb = self._finish(breached=io.breach is not None)
        return self._result(io, code, maxrss_kb, cgroup, reply)  # a refused reply is not decoded again

    def _hand_over(self, payload: bytes) -> tuple[int, int, int, bytes]:
        """Send the request and the guest's ends of its stdio straight to the child; return our ends
        of stdin (-1: none, or written and closed), stdout and stderr, and what is left to write."""
        stdin_r, stdin_w = _invocation_input(payload)
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        guest_fds = [stdin_r, stdout_w, stderr_w]
        try:
            rest = _prefill(stdin_w, payload) if stdin_w >= 0 else b""
            socket.send_fds(self.child.request, [msgspec.json.encode(self._request(len(payload)))], guest_fds)
        except OSError:
            for fd in (stdin_w, stdout_r, stderr_r):
                if fd >= 0:
                    os.close(fd)
            raise BrokenPipeError("the waiting child was gone") from None
        finally:
            for fd in guest_fds:
                os.close(fd)
        if not rest and stdin_w >= 0:
            os.close(stdin_w)
            stdin_w = -1
        return stdin_w, stdout_r, stderr_r, rest

    def _request(self, size: int) -> dict:
        limits = self.spec.limits
        nproc = None if self.child.cgroup is not None else processes_of_uid(self.zygote.uid) + limits.max_processes
        return {
            "entry": self.spec.entry,
            "plugin_dir": self.inside,
            "encoding": self.spec.encoding,
            "size": size,  # of the invocation on stdin: the child reads it into one buffer
            "rlimits": guest_rlimits(limits, nproc=nproc),
            "landlock": self.landlock,
        }

    def _exchange(
        self, stdin: IO[bytes] | None, out: IO[bytes], err: IO[bytes], rest: bytes, started: float
    ) -> Exchange:
        limits = self.spec.limits
        cgroup = self.child.cgroup
        first_check = started + _FIRST_CHECK_S  # nothing to find at once (counters were reset)
        return exchange(
            stdin=stdin,
            stdout=out,
            stderr=err,
            payload=rest,
            deadline=started + limits.wall_seconds,
            max_stdout=limits.max_output_kb * 1024,
            max_stderr=limits.max_log_kb * 1024,
            exited=lambda: readable(self.child.status_fd, 0),
            over_cpu=lambda: (
                cgroup is not None and time.monotonic() > first_check and cgroup.cpu_ms() > limits.cpu_seconds * 1000
            ),
            over_processes=lambda: cgroup is not None and time.monotonic() > first_check and cgroup.pids_limited(),
            started=started,
        )

    def _answered(self, io: Exchange, encoding: Encoding, max_output_kb: int) -> Reply | ReplyRefused | None:
        """The run's reply when the run is over without waiting for the child's exit: it wrote a whole
        reply and closed its stdio, within every limit. The child is SIGKILLed now (pid 1 of its PID
        namespace: everything it started dies with it); its teardown and reaping, ~1 ms of unmapping
        an address space, happen after the result is returned (the upkeep waits for them before the
        cgroup is reused). None: wait for the exit code as usual (no reply, a breach, or a run without
        cgroups, whose usage only the reaper knows); or why the reply did not decode (malformed, or
        over a decoded cap): then how the child ended decides, and classifying keeps this verdict."""
        child = self.child
        if io.breach is not None or not io.stdout or child.cgroup is None:
            return None
        reply = decode_attempt(io.stdout, encoding, max_output_kb)
        if not isinstance(reply, Reply):
            return reply
        kill_members(child.cgroup)  # synchronous: nothing of the run executes once we return
        child.answered = True
        return reply

    def _finish(self, *, breached: bool) -> tuple[int | None, int]:
        """The handler's exit code and peak RSS; kill whatever of the run is left."""
        child = self.child
        if breached or not readable(child.status_fd, EXIT_GRACE_S):
            if child.cgroup is not None:
                child.cgroup.kill()
            self.zygote.kill(child)
            if not readable(child.status_fd, EXIT_GRACE_S):
                return None, 0
        try:
            data = os.read(child.status_fd, 64)
        except OSError:
            data = b""
        if not data:  # the zygote closed the pipe without a word: it (and its sandbox) is gone
            return -signal.SIGKILL, 0
        code, maxrss_kb = (int(x) for x in data.split())
        return code, maxrss_kb

    def _result(
        self, io: Exchange, code: int | None, maxrss_kb: int, cgroup: RunCgroup | None, reply: Reply | None = None
    ) -> RunResult:
        cpu_ms = cgroup.cpu_ms() if cgroup is not None else 0.0
        peak_kb = max(maxrss_kb, cgroup.peak_memory_kb() if cgroup is not None else 0)
        oom = cgroup is not None and cgroup.oom_killed()
        return run_result(
            self.spec,
            io,
            returncode=code,
            cpu_ms=cpu_ms,
            peak_kb=peak_kb,
            oom_killed=oom,
            isolation=self.isolation,
            reply=reply,
        )


def readable(fd: int, timeout_s: float) -> bool:
    try:
        return bool(ready_among([fd], timeout_s))
    except (OSError, ValueError):
        return True


def _grow_pipe(fd: int, size_bytes: int) -> None:
    """Let a big payload go in one write instead of 64 KiB ping-pongs with the guest."""
    if size_bytes > 65536:
        with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(size_bytes, 1 << 20))


def _invocation_input(payload: bytes) -> tuple[int, int]:
    """The child's stdin and our writing end (-1: none). A big invocation goes in a sealed memfd
    that the child maps instead of copying it out of a pipe; a small one in a pipe, written now."""
    if len(payload) >= _MEMFD_MIN_BYTES:
        with contextlib.suppress(OSError):
            fd = os.memfd_create("rh-invocation", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.lseek(fd, 0, os.SEEK_SET)
                seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)  # the child cannot change what the host wrote
                return fd, -1
            except OSError:
                os.close(fd)
                raise
    read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    os.set_blocking(read_end, True)
    _grow_pipe(write_end, len(payload))
    return read_end, write_end


def _prefill(fd: int, payload: bytes) -> bytes:
    """Write what fits of ``payload`` into the (non-blocking) pipe now; return the rest."""
    try:
        return payload[os.write(fd, payload) :] if payload else payload
    except BlockingIOError:
        return payload
