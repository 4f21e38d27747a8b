"""The fork server (zygote) of one group, running inside that group's strict sandbox.

Copied into the guest runtime as ``_rh_zygote.py``; stdlib + SDK only. Single-threaded: one loop
over the control socket and a SIGCHLD wake-up pipe. It imports the SDK and msgspec once, never any
plugin code, and on the host's ``spawn`` message forks:

    zygote ── A (the run's reaper: unshares PID + mount namespaces, forks B, waits, reports B's end
               │  on the status pipe the host gave it)
               └── B (pid 1 of its own namespace: joins the slot's cgroups, mounts /proc, waits for
                      the run's request on the socket the host gave it; then mounts a bounded /tmp,
                      takes stdin/stdout/stderr, drops every capability, applies rlimits, Landlock
                      and seccomp, runs the handler)

The host spawns ("arms") children ahead of runs, so the cgroup join (a cgroup v1 migration can wait
for an RCU grace period) and the forks are off the hot path; a run then talks to its B and A directly,
without the zygote. Every child closes every inherited descriptor but its own three, so no child can
use the control channel or reach another waiting child. The zygote is not dumpable, and a handler
cannot name it (its own PID namespace) nor signal it (Landlock's scope).
"""

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import traceback

_MAX_FDS = 16
_PR_SET_DUMPABLE = 4
_PR_SET_PDEATHSIG = 1


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


class Zygote:
    def __init__(self, args: dict) -> None:
        import _rh_confine as confine

        self.confine = confine
        self.control = socket.socket(fileno=args["control_fd"])
        self.landlock_abi = int(args.get("landlock_abi", 0))
        bpf = b""
        if args.get("seccomp"):
            with open(args["seccomp"], "rb") as f:
                bpf = f.read()
        self.seccomp = confine.SeccompProgram(bpf)
        self.children: dict[str, int] = {}  # slot -> pid of its A, until reaped
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ---- the loop -------------------------------------------------------------------------
    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.control.send(json.dumps({"event": "ready", "pid": os.getpid()}).encode())
        while True:
            try:
                readable, _, _ = select.select([self.control, self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in readable:
                self._drain_wakeups()
                self._reap()
            if self.control in readable and not self._on_message():
                return  # the host closed the channel: stop (the sandbox ends with us)

    def _on_message(self) -> bool:
        """``spawn``: fds are B's request socket, A's status pipe, then cgroup.procs files to join.
        ``kill``: SIGKILL a slot's A (B, pid 1 of its namespace, dies with it)."""
        try:
            data, fds, _, _ = socket.recv_fds(self.control, 1 << 16, _MAX_FDS)
        except InterruptedError:
            return True
        if not data:
            return False
        message = json.loads(data)
        try:
            if message["op"] == "spawn" and len(fds) >= 2:
                self.children[message["slot"]] = self._spawn(fds[0], fds[1], fds[2:])
            elif message["op"] == "kill" and message["slot"] in self.children:
                os.kill(self.children[message["slot"]], signal.SIGKILL)
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for slot in [s for s, p in self.children.items() if p == pid]:
                del self.children[slot]

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    # ---- the children ---------------------------------------------------------------------
    def _spawn(self, request_fd: int, status_fd: int, cgroup_fds: list[int]) -> int:
        """Fork A (and through it B). Only these descriptors survive in the child."""
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 127
            try:
                keep = {request_fd, status_fd, *cgroup_fds}
                for fd in range(3, max(keep) + 1):  # nothing of the zygote's: no control channel
                    if fd not in keep:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                os.closerange(max(keep) + 1, 1 << 16)
                code = self._reaper(socket.socket(fileno=request_fd), cgroup_fds, status_fd)
            finally:
                os._exit(code)
        return pid

    def _reaper(self, sock: socket.socket, cgroup_fds: list[int], status_fd: int) -> int:
        """Process A: owns the run's PID namespace; its exit mirrors B's."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        self.confine.unshare(self.confine.CLONE_NEWPID | self.confine.CLONE_NEWNS)
        pid = os.fork()
        if pid == 0:
            code = 127
            try:
                os.close(status_fd)
                code = self._runner(sock, cgroup_fds)
            except BaseException:  # a fault of the set-up or the runner: into the run's logs
                traceback.print_exc()
            finally:
                os._exit(code)
        sock.close()
        for fd in cgroup_fds:
            os.close(fd)
        _, status, usage = os.wait4(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        os.write(status_fd, f"{code} {usage.ru_maxrss}".encode())  # to the host, before A's own exit
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
            return 128 - code
        return code

    def _runner(self, sock: socket.socket, cgroup_fds: list[int]) -> int:
        """Process B: set up, wait for one request, confine, run the handler."""
        confine = self.confine
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        confine.join_cgroups(cgroup_fds)  # the armed slot's cgroups: before anything else
        confine.make_mounts_private()
        confine.mount_proc()
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, _MAX_FDS)
        sock.close()
        if not data or len(fds) != 3:
            return 0  # the host gave up on this child
        request = json.loads(data)
        stdin, stdout, stderr = fds
        confine.mount_scratch("/tmp", request["scratch_bytes"])
        os.chdir("/tmp")
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        confine.drop_capabilities()
        confine.set_rlimits(request["rlimits"])
        confine.apply_landlock([tuple(rule) for rule in request["landlock"]], self.landlock_abi)
        self.seccomp.install()
        os.environ.clear()
        os.environ.update(request["env"])
        from rh_sdk.runner import main

        code = main(request["entry"], request["plugin_dir"], request["encoding"])
        sys.stderr.flush()
        return code


def _preload() -> None:
    """Import what every handler needs once, here, so each child starts warm."""
    import logging  # noqa: F401

    import msgspec  # noqa: F401

    from rh_sdk import runner  # noqa: F401
    from rh_sdk.protocol import invocation_decoder

    invocation_decoder("msgpack"), invocation_decoder("json")


def main(args: dict) -> int:
    sys.path[:0] = [args["site"]]
    sys.dont_write_bytecode = True
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _prctl(_PR_SET_DUMPABLE, 0)
    _preload()
    zygote = Zygote(args)
    gc.freeze()  # keep the preloaded heap shared with the children (no copy-on-write by the collector)
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
