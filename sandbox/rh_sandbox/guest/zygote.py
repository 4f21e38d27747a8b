"""The fork server (zygote) of one group, running inside that group's strict sandbox.

Copied into the guest runtime as ``_rh_zygote.py``; stdlib + SDK only. Single-threaded: one loop
over the control socket and a SIGCHLD wake-up pipe. It imports the SDK and msgspec once, never any
plugin code, and on the host's ``spawn`` message forks one child straight into a new PID namespace:

    zygote (reaps each child, writes its exit code and peak RSS on the status pipe the host gave)
      └── child, pid 1 of its own PID namespace. Before the request (armed): joins the slot's cgroups,
          unshares a mount namespace, mounts /proc and a /tmp of the spawn's scratch size (its
          environment is the zygote's, set once from the host's), drops every capability, installs seccomp, then
          waits for the run's request on the socket the host gave it. A child armed for one plugin
          also takes the rlimits of the run it is armed for (its cgroup has that run's limits too),
          applies that plugin's Landlock rules and imports it (fully confined), and warms the heap
          the host asks for (the size of that plugin's last run), before it waits; the host then
          freezes it until a run claims it, and charges what it used to that run.
          After the request: takes
          stdin/stdout/stderr, applies the run's rlimits and Landlock (its own plugin dir only), runs
          the handler, closes its stdio (the host sees EOF before the exit is torn down), exits.

The host spawns ("arms") children ahead of runs, so the cgroup join (a cgroup v1 migration can wait
for an RCU grace period), the fork and everything that does not depend on the request are off the
hot path; a run then talks to its child directly, without the zygote, and learns its end from the
status pipe. Every child closes every inherited descriptor but its own, so no child can use the
control channel or reach another waiting child. The zygote is not dumpable, and a handler cannot
name it (its own PID namespace) nor signal it (Landlock's scope).
"""

import _signal
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
_READY = b"r"  # sent by an armed child on its request socket when it is confined and waiting


_libc = ctypes.CDLL(None, use_errno=True)
# A PyDLL call keeps the GIL, so fork(2) runs with this thread holding it, as in os.fork.
_fork_without_hooks = ctypes.PyDLL(None, use_errno=True).fork
_fork_without_hooks.restype = ctypes.c_int


def _prctl(option: int, value: int) -> None:
    _libc.prctl(option, value, 0, 0, 0)


def _setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _fork_child() -> int:
    """fork(2) without Python's at-fork hooks.

    The hooks (threading's and logging's) re-initialise locks that another thread may have held at
    the fork. The zygote has no other thread and holds no lock when it forks, so they have nothing
    to do, but running them writes to many pages of the shared heap, a copy-on-write fault each: a
    bare child takes 214 faults with them and 48 without; a fork server's child ~45 fewer in all
    (its own code touches many of those pages later anyway)."""
    pid = _fork_without_hooks()
    if pid < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"fork: {os.strerror(errno)}")
    return pid


def _close_all_but(keep: set[int]) -> None:
    """Close every descriptor not in ``keep`` (the zygote's control channel, other children's pipes)."""
    low = 0
    for fd in sorted(keep):
        if fd > low:  # closerange(a, a) would close everything from a (close_range(a, a - 1) wraps)
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


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
        # this process's own PID namespace: "the next child's namespace" is reset to it after each fork
        self.pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.children: dict[int, tuple[str, int]] = {}  # pid -> (slot, status pipe), until reaped
        self.slots: dict[str, int] = {}  # slot -> pid
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.warmed: list[bytes] = []  # in a child: what keeps its warmed heap's arenas (_warm_heap)
        import msgspec

        from rh_sdk import runner

        # The control channel speaks msgspec JSON, not json's: one C call that touches few of the
        # zygote's objects, so fewer copy-on-write faults per spawn and in a child reading its request
        self.decode = msgspec.json.decode
        self.encode = msgspec.json.encode
        # The runner's own set-up (seed alias, log stream, logging handler) once, for every child;
        # each child attaches the log stream to its run's stderr.
        self.guest = runner.prepare()

    # ---- the loop -------------------------------------------------------------------------
    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.control.send(self.encode({"event": "ready", "pid": os.getpid()}))
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
        """``spawn``: fds are the child's request socket, its status pipe, then cgroup.procs files to
        join. ``kill``: SIGKILL a slot's child (pid 1 of its namespace: everything in it dies too)."""
        try:
            data, fds, _, _ = socket.recv_fds(self.control, 1 << 16, _MAX_FDS)
        except InterruptedError:
            return True
        if not data:
            return False
        message = self.decode(data)
        keep = -1
        try:
            if message["op"] == "spawn" and len(fds) >= 2:
                pid = self._spawn(fds[0], fds[1], fds[2:], message)
                self.children[pid] = (message["slot"], fds[1])
                self.slots[message["slot"]] = pid
                keep = fds[1]  # the status pipe: written when the child is reaped
            elif message["op"] == "kill" and message["slot"] in self.slots:
                os.kill(self.slots[message["slot"]], signal.SIGKILL)
        except OSError:
            traceback.print_exc()  # the host sees the child's sockets close and retries elsewhere
        finally:
            for fd in fds:
                if fd != keep:
                    os.close(fd)
        return True

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot, status_fd = self.children.pop(pid, ("", -1))
            self.slots.pop(slot, None)
            if status_fd >= 0:
                try:
                    os.write(status_fd, f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}".encode())
                except OSError:
                    pass  # the host gave up on this child
                finally:
                    os.close(status_fd)

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    # ---- the children ---------------------------------------------------------------------
    def _spawn(self, request_fd: int, status_fd: int, cgroup_fds: list[int], setup: dict) -> int:
        """Fork the child into a new PID namespace. Only its request socket and cgroup files survive."""
        confine = self.confine
        sys.stderr.flush()
        confine.unshare(confine.CLONE_NEWPID)  # the next child is pid 1 of a new namespace
        try:
            pid = _fork_child()
        except BaseException:
            _setns(self.pid_ns, confine.CLONE_NEWPID)
            raise
        if pid != 0:
            _setns(self.pid_ns, confine.CLONE_NEWPID)  # back to our own: the next unshare makes a sibling
            return pid
        code = 127
        try:
            signal.set_wakeup_fd(-1)
            # the C function: signal.signal's enum conversions cost a child ~0.15 ms of page faults
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
            if "random" in sys.modules:  # its at-fork reseed was skipped (see _fork_child)
                sys.modules["random"].seed()
            # not the control channel, not the status pipes: its own socket, cgroup files and log stream
            _close_all_but({0, 1, 2, request_fd, self.guest.log_fd, *cgroup_fds})
            code = self._child(socket.socket(fileno=request_fd), cgroup_fds, setup)
        except BaseException:  # a fault of the set-up (zygote's stderr) or the runner (the run's logs)
            traceback.print_exc()
        finally:
            os._exit(code)

    def _child(self, sock: socket.socket, cgroup_fds: list[int], setup: dict) -> int:
        """Confine everything that does not depend on the request, wait for it, run the handler."""
        confine = self.confine
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        confine.join_cgroups(cgroup_fds)  # the slot's cgroups: before anything else
        confine.unshare(confine.CLONE_NEWNS)
        confine.make_mounts_private()
        confine.mount_proc()
        confine.mount_scratch("/tmp", setup["scratch_bytes"])
        os.chdir("/tmp")
        guest = self.guest
        confine.drop_capabilities()
        self.seccomp.install()
        preload = setup.get("preload")  # armed for one plugin: confined to it and its import done now
        if preload is not None:
            confine.set_rlimits(preload["rlimits"])  # the run's, before any plugin code
            confine.apply_landlock([tuple(rule) for rule in preload["landlock"]], self.landlock_abi)
            if not guest.preload(preload["entry"], preload["plugin_dir"], "/tmp"):
                return 0  # the import raised: never "ready" (the host stops preloading that plugin)
            self.warmed = _warm_heap(preload.get("heap_bytes", 0))
        gc.freeze()  # what the set-up made stays out of the run's collections
        try:
            sock.send(_READY)
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, _MAX_FDS)
        except OSError:
            return 0  # the host gave up on this child
        sock.close()
        if not data or len(fds) != 3:
            return 0  # the host gave up on this child
        request = self.decode(data)
        stdin, stdout, stderr = fds
        guest.attach(stdin, stdout, stderr)
        confine.set_rlimits(request["rlimits"])
        if preload is None or request["landlock"] != preload["landlock"]:  # Landlock layers only narrow
            confine.apply_landlock([tuple(rule) for rule in request["landlock"]], self.landlock_abi)
        code = guest.run(request["entry"], request["plugin_dir"], request["encoding"], request.get("size", 0))
        guest.close()  # EOF for the host now, not after this process's teardown
        return code


def _warm_heap(nbytes: int) -> list[bytes]:
    """Fault in ``nbytes`` of Python heap now, while the child waits, instead of during its run.

    In a fresh child every page of heap the run's objects need is a page fault (~3 us here, dozens
    of faults per decoded batch result). Filling ``nbytes`` of CPython's small-object arenas with
    512-byte objects and freeing them leaves empty pools in already-faulted pages, which the run's
    objects reuse first. An arena whose objects are all freed goes back to the kernel, so one object
    per 256 KiB window of addresses is kept (returned): a 1 MiB arena always holds such a window."""
    if nbytes <= 0:
        return []
    blocks = [bytes(470) for _ in range(nbytes // 512)]  # 470 + the bytes header: the 512-byte class
    kept: dict[int, bytes] = {}
    for block in blocks:
        kept.setdefault(id(block) >> 18, block)
    return list(kept.values())


def _preload() -> None:
    """Import what every handler needs once, here, so each child starts warm."""
    import logging  # noqa: F401

    import msgspec  # noqa: F401

    from rh_sdk import runner

    runner.preload()


def _own_pid_namespace(confine: object) -> None:
    """Continue in a child that is pid 1 of a PID namespace owned by our own user namespace.

    bwrap's ``--disable-userns`` runs us in a nested user namespace, so the sandbox's PID namespace
    is not ours to ``setns`` back into after an ``unshare(CLONE_NEWPID)``; a namespace we made is.
    The parent only waits (the sandbox ends when it does) and passes the exit status on."""
    confine.unshare(confine.CLONE_NEWPID)  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        return
    _close_all_but({0, 1, 2})
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)


def main(args: dict) -> int:
    sys.path[:0] = [args["site"]]
    sys.dont_write_bytecode = True
    import resource

    import _rh_confine as confine

    confine.join_cgroups(args.get("cgroup_fds", []))  # its group's share of the CPU: first
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.environ.clear()  # once, here: every child inherits exactly the host's sandbox environment
    os.environ.update(args["env"])
    _prctl(_PR_SET_DUMPABLE, 0)
    _preload()
    _own_pid_namespace(confine)
    zygote = Zygote(args)
    gc.freeze()  # keep the preloaded heap shared with the children (no copy-on-write by the collector)
    _libc.malloc_trim(0)  # ~0.9 MB of freed heap back to the system: fewer pages for each fork to map
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
