"""The fork server (zygote) of one group, running inside that group's strict sandbox.

Copied into the guest runtime as ``_rh_zygote.py``; stdlib + SDK only. Single-threaded: one loop
over the control socket and a SIGCHLD wake-up pipe. It imports the SDK and msgspec once, never any
plugin code, and forks per invocation:

    zygote ── A (the run's reaper: unshares PID + mount namespaces, forks B, waits, mirrors B's end)
               └── B (pid 1 of its own namespace: mounts /proc, waits for its request; then joins
                      the run's cgroups, mounts a bounded /tmp, takes stdin/stdout/stderr, drops
                      every capability, applies rlimits, Landlock and seccomp, runs the handler)

The host "arms" slots ahead of runs: each armed slot is an A/B pair already forked whose B has
joined the slot's cgroups (cgroup v1 migration can wait for an RCU grace period: never on the hot
path when a slot is ready). Every child closes every inherited descriptor but its own
request socket, so no child can use the control channel or reach another waiting child. The zygote
is not dumpable (no ptrace, no /proc/<pid>/mem by the same uid) and Landlock's signal scope keeps
a handler from signalling it.
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
        self.seccomp = b""
        if args.get("seccomp"):
            with open(args["seccomp"], "rb") as f:
                self.seccomp = f.read()
        self.spares: dict[str, tuple[int, socket.socket]] = {}  # armed slot -> waiting child (A pid, socket)
        self.running: dict[int, str] = {}  # pid of A -> run id
        self.status_fds: dict[int, int] = {}  # pid of A -> read end of the pipe A reports B's end on
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ---- the loop -------------------------------------------------------------------------
    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self._send({"event": "ready", "pid": os.getpid()})
        while True:
            try:
                readable, _, _ = select.select([self.control, self.wake_r, *self.status_fds.values()], [], [])
            except InterruptedError:
                continue
            for pid, fd in list(self.status_fds.items()):
                if fd in readable:
                    self._on_status(pid, fd)
            if self.wake_r in readable:
                self._drain_wakeups()
                self._reap()
            if self.control in readable and not self._on_request():
                return  # the host closed the channel: stop (the sandbox ends with us)

    def _on_request(self) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, 1 << 20, _MAX_FDS)
        except InterruptedError:
            return True
        if not data:
            return False
        message = json.loads(data)
        op = message.get("op", "run")
        if op == "kill":
            for pid, run_id in self.running.items():
                if run_id == message["id"]:
                    os.kill(pid, signal.SIGKILL)
        elif op == "arm":  # a waiting child for a slot, joining the slot's cgroups now, off the hot path
            self.spares[message["slot"]] = self._spawn(fds)
        else:
            self._start_run(message, data, fds)
        for fd in fds:
            os.close(fd)
        return True

    def _start_run(self, message: dict, data: bytes, fds: list[int]) -> None:
        if message.get("slot"):
            spare = self.spares.pop(message["slot"], None)
            if spare is None:  # its waiting child died: never run outside the slot's cgroups
                self._send({"event": "exit", "id": message["id"], "code": None, "lost": True})
                return
        else:
            spare = self._spawn([])
        pid, sock = spare
        try:
            socket.send_fds(sock, [data], fds)
            self.running[pid] = message["id"]
        except OSError:  # the waiting child died: the run crashed before it began
            self._send({"event": "exit", "id": message["id"], "code": -signal.SIGKILL, "maxrss_kb": 0})
        finally:
            sock.close()

    def _on_status(self, pid: int, fd: int) -> None:
        """A reports B's end before its own exit: the run's end is known without waiting for A."""
        data = os.read(fd, 256)
        os.close(fd)
        del self.status_fds[pid]
        run_id = self.running.pop(pid, None)
        if data and run_id is not None:
            code, maxrss_kb = (int(x) for x in data.split())
            self._send({"event": "exit", "id": run_id, "code": code, "maxrss_kb": maxrss_kb})
        elif run_id is not None:
            self.running[pid] = run_id  # A died without reporting: its wait status will say how

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = self.status_fds.pop(pid, None)
            if fd is not None:
                os.close(fd)
            run_id = self.running.pop(pid, None)
            if run_id is not None:
                code = os.waitstatus_to_exitcode(status)
                self._send({"event": "exit", "id": run_id, "code": code, "maxrss_kb": usage.ru_maxrss})
                continue
            for slot, (spare_pid, sock) in list(self.spares.items()):  # a waiting child died unused
                if spare_pid == pid:
                    del self.spares[slot]
                    sock.close()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _send(self, event: dict) -> None:
        self.control.send(json.dumps(event).encode())

    # ---- the children ---------------------------------------------------------------------
    def _spawn(self, cgroup_fds: list[int]) -> tuple[int, socket.socket]:
        """Fork A (and through it B); B joins ``cgroup_fds`` at once, then waits for its request."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 127
            try:
                keep = {theirs.fileno(), status_w, *cgroup_fds}
                for fd in range(3, max(keep) + 1):  # nothing of the zygote's: no control channel
                    if fd not in keep:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                os.closerange(max(keep) + 1, 1 << 16)
                code = self._reaper(theirs, cgroup_fds, status_w)
            finally:
                os._exit(code)
        theirs.close()
        os.close(status_w)
        self.status_fds[pid] = status_r
        return pid, ours

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
        os.write(status_fd, f"{code} {usage.ru_maxrss}".encode())  # before A's own (slower) exit
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
        if not data:
            return 0
        request = json.loads(data)
        stdin, stdout, stderr, *cgroup_fds = fds
        confine.join_cgroups(cgroup_fds)
        confine.mount_scratch("/tmp", request["scratch_bytes"])
        os.chdir("/tmp")
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        confine.drop_capabilities()
        confine.set_rlimits(request["rlimits"])
        confine.apply_landlock([tuple(rule) for rule in request["landlock"]], self.landlock_abi)
        confine.load_seccomp(self.seccomp)
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
