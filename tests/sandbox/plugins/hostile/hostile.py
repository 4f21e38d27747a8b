"""Hostile handlers: each tries one escape and reports what happened; the tests judge it.

Every attempt is wrapped so that the handler returns an observation instead of raising: the test
asserts that the attempt was refused, not merely that the run failed.
"""

import contextlib
import ctypes
import os
import resource
import socket
import threading
import time

from rh_sdk import ResultHandler

VERSION = "original"


def attempt(fn):
    try:
        return {"ok": True, "value": fn()}
    except BaseException as exc:
        return {"ok": False, "error": type(exc).__name__, "errno": getattr(exc, "errno", None)}


def _read(path):
    with open(path, "rb") as f:
        return f.read(200).decode("utf-8", "replace")


class ReadPaths(ResultHandler):
    """config.paths: files and dirs to read or list."""

    def handle(self, batch_id, results, metadata):
        out = {}
        for path in self.config["paths"]:
            out[path] = attempt(lambda p=path: sorted(os.listdir(p)) if os.path.isdir(p) else _read(p))
        return out


class Connect(ResultHandler):
    """config.tcp: [host, port]; config.unix: a path; config.abstract: a name (without the NUL)."""

    def handle(self, batch_id, results, metadata):
        out = {}
        if "tcp" in self.config:
            host, port = self.config["tcp"]
            out["tcp"] = attempt(lambda: socket.create_connection((host, port), timeout=2).close())
        if "unix" in self.config:
            out["unix"] = attempt(lambda: _unix(self.config["unix"]))
        if "abstract" in self.config:
            out["abstract"] = attempt(lambda: _unix("\0" + self.config["abstract"]))
        return out


def _unix(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(address)
    finally:
        s.close()


class ProcSnoop(ResultHandler):
    """Read every visible /proc/<pid>/environ and cmdline; then SIGKILL every visible pid."""

    def handle(self, batch_id, results, metadata):
        me = os.getpid()
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        environ = {}
        for pid in pids:
            res = attempt(lambda p=pid: _read(f"/proc/{p}/environ"))
            environ[str(pid)] = res.get("value", "")
        killed = {}
        if self.config.get("kill"):
            for pid in pids:
                if pid != me:
                    killed[str(pid)] = attempt(lambda p=pid: os.kill(p, 9))
            killed["-1"] = attempt(lambda: os.kill(-1, 9))  # everything this uid may signal
        return {"me": me, "pids": pids, "environ": environ, "killed": killed}


class Tamper(ResultHandler):
    """Overwrite its own module and the SDK; report whether either write went through."""

    def handle(self, batch_id, results, metadata):
        import rh_sdk

        here = os.path.dirname(os.path.abspath(__file__))
        sdk = os.path.dirname(rh_sdk.__file__)
        return {
            "VERSION": VERSION,
            "own_module": attempt(lambda: _write(os.path.join(here, "hostile.py"), "VERSION = 'tampered'\n")),
            "new_file": attempt(lambda: _write(os.path.join(here, "planted.py"), "x = 1\n")),
            "sdk": attempt(lambda: _write(os.path.join(sdk, "__init__.py"), "raise SystemExit\n")),
        }


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Privileges(ResultHandler):
    """setuid(0), ptrace the parent, raise the hard RLIMIT_NOFILE, read a root-only file."""

    def handle(self, batch_id, results, metadata):
        libc = ctypes.CDLL(None, use_errno=True)

        def ptrace_parent():
            if libc.ptrace(16, os.getppid(), None, None) != 0:  # PTRACE_ATTACH
                raise OSError(ctypes.get_errno(), "ptrace")

        def raise_nofile():
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard + 1, hard + 1))

        out = {
            "uid": os.getuid(),
            "setuid0": attempt(lambda: os.setuid(0)),
            "ptrace_parent": attempt(ptrace_parent),
            "raise_nofile": attempt(raise_nofile),
            "unshare_user": attempt(lambda: _unshare(libc)),
        }
        if "secret" in self.config:  # a file name in its own (read-only) plugin dir
            here = os.path.dirname(os.path.abspath(__file__))
            out["secret"] = attempt(lambda: _read(os.path.join(here, self.config["secret"])))
        return out


def _unshare(libc):
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        raise OSError(ctypes.get_errno(), "unshare")


class ThreadBomb(ResultHandler):
    def handle(self, batch_id, results, metadata):
        threads = []
        for _ in range(10_000):
            t = threading.Thread(target=time.sleep, args=(30,), daemon=True)
            t.start()
            threads.append(t)
        return {"threads": len(threads)}


class ForkBomb(ResultHandler):
    def handle(self, batch_id, results, metadata):
        while True:
            with contextlib.suppress(OSError):
                os.fork()


class Daemon(ResultHandler):
    """Double-fork a setsid daemon that execs sleep with a marker, then return at once."""

    def handle(self, batch_id, results, metadata):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", self.config["marker"]])
            os._exit(0)
        os.wait()
        return {"daemon": "started"}


class FillScratch(ResultHandler):
    """Write 1 MiB chunks into the scratch dir (cwd) until refused."""

    def handle(self, batch_id, results, metadata):
        written = 0
        chunk = b"x" * (1 << 20)
        try:
            with open("fill.bin", "wb") as f:
                while written < 4096 << 20:
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
        except OSError as exc:
            return {"written_mb": written >> 20, "error": type(exc).__name__, "errno": exc.errno, "cwd": os.getcwd()}
        return {"written_mb": written >> 20, "error": None, "cwd": os.getcwd()}


class Remember(ResultHandler):
    """Leave traces (a scratch file, an env var, a module global) and report the previous run's."""

    def handle(self, batch_id, results, metadata):
        import sys

        seen = {
            "file": os.path.exists("/tmp/trace.txt"),
            "env": os.environ.get("RH_TRACE"),
            "module": getattr(sys.modules.get("hostile"), "TRACE", None),
        }
        with open("/tmp/trace.txt", "w") as f:
            f.write("trace")
        os.environ["RH_TRACE"] = "1"
        globals()["TRACE"] = 1
        return seen


class OpenFds(ResultHandler):
    """What descriptors did the sandbox leave open in the handler's process?"""

    def handle(self, batch_id, results, metadata):
        fds = {}
        for name in os.listdir("/proc/self/fd"):
            fds[name] = attempt(lambda n=name: os.readlink(f"/proc/self/fd/{n}"))
        return fds


_IPC_CREAT = 0o1000
_IPC_RMID = 0


def _libc_call(name, *args, restype=ctypes.c_int):
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, name)
    fn.restype = restype
    result = fn(*args)
    if result in (-1, ctypes.c_void_p(-1).value) or (result is None and restype is ctypes.c_void_p):
        raise OSError(ctypes.get_errno(), f"{name}: {os.strerror(ctypes.get_errno())}")
    return result


def _leave_shm(key, size):
    """A SysV shared memory segment of ``size`` bytes, touched (so it holds memory), left behind."""
    shmid = _libc_call("shmget", key, ctypes.c_size_t(size), _IPC_CREAT | 0o600)
    addr = _libc_call("shmat", ctypes.c_int(shmid), None, 0, restype=ctypes.c_void_p)
    ctypes.memset(addr, 0x61, size)
    _libc_call("shmdt", ctypes.c_void_p(addr))
    return shmid


def _read_shm(key):
    shmid = _libc_call("shmget", key, ctypes.c_size_t(0), 0o600)
    addr = _libc_call("shmat", ctypes.c_int(shmid), None, 0o10000, restype=ctypes.c_void_p)  # SHM_RDONLY
    data = ctypes.string_at(addr, 4).decode()
    _libc_call("shmdt", ctypes.c_void_p(addr))
    return data


class LeaveIpc(ResultHandler):
    """Leave an object in every IPC mechanism a run could reach (SysV shm, semaphores and message
    queues, POSIX message queues, /dev/shm, /dev, /tmp) and report what an earlier run left there."""

    def handle(self, batch_id, results, metadata):
        key = int(self.config.get("key", 0x52480001))
        size = int(self.config.get("mb", 1)) << 20
        return {
            "shm_found": attempt(lambda: _read_shm(key)),
            "dev_shm_found": attempt(lambda: _read("/dev/shm/rh-trace")),
            "dev_found": attempt(lambda: _read("/dev/rh-trace")),
            "tmp_found": attempt(lambda: _read("/tmp/rh-trace")),
            "mqueue_found": attempt(lambda: _libc_call("mq_open", b"/rh-trace", os.O_RDONLY)),
            "shm_left": attempt(lambda: _leave_shm(key, size)),
            "sem_left": attempt(lambda: _libc_call("semget", key, 1, _IPC_CREAT | 0o600)),
            "msg_left": attempt(lambda: _libc_call("msgget", key, _IPC_CREAT | 0o600)),
            "mqueue_left": attempt(lambda: _libc_call("mq_open", b"/rh-trace", os.O_CREAT | os.O_RDWR, 0o600, None)),
            "dev_shm_left": attempt(lambda: _write("/dev/shm/rh-trace", "trace")),
            "dev_left": attempt(lambda: _write("/dev/rh-trace", "trace")),
            "tmp_left": attempt(lambda: _write("/tmp/rh-trace", "trace")),
        }
class EmptyMaps(ResultHandler):
    """config.count empty maps in the reply: one byte each on the wire, a dict each once decoded."""

    def handle(self, batch_id, results, metadata):
        return {"o": [{}] * self.config["count"]}


class Newlines(ResultHandler):
    """config.lines lines of ``a`` on stderr: one log record each, were they parsed line by line."""

    def handle(self, batch_id, results, metadata):
        import sys

        sys.stderr.write("a\n" * self.config["lines"])
        sys.stderr.flush()
        return {}


class ForgesHostRecords(ResultHandler):
    """Writes log lines shaped exactly like the host's own notes, then claims the OOM killer hit it."""

    def handle(self, batch_id, results, metadata):
        import json
        import sys

        for logger in ("rh.sandbox", "rh.egress"):
            note = "log output truncated at max_log_kb"
            record = {"level": "WARNING", "logger": logger, "source": "host", "message": note}
            sys.stderr.write(json.dumps(record) + "\n")
        sys.stderr.flush()
        raise MemoryError("memory limit reached (killed by the OOM killer)")
