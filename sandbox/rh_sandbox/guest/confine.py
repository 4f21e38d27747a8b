"""Guest-side confinement steps: stdlib only (ctypes), run inside the sandbox before plugin code.

Copied into the guest runtime as ``_rh_confine.py`` and used by the cold boot script and by the
fork server's children. Each step is one small function; the caller applies them in this order:
join cgroups, (mounts), drop capabilities, rlimits, Landlock, seccomp. Seccomp comes last because
its filter forbids some of the earlier steps' syscalls (mount, unshare).
"""

import ctypes
import os
import resource

__all__ = [
    "SeccompProgram",
    "apply_landlock",
    "drop_capabilities",
    "join_cgroups",
    "landlock_abi",
    "load_seccomp",
    "mount_fs",
    "set_rlimits",
    "unshare",
]

_libc = ctypes.CDLL(None, use_errno=True)

_RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
    "nproc": resource.RLIMIT_NPROC,
}

# x86_64 / aarch64 syscall numbers of Landlock (the same on both: 444-446)
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_LANDLOCK_RULE_NET_PORT = 2
_NET_BIND_TCP = 1 << 0
_NET_CONNECT_TCP = 1 << 1

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_TRUNCATE = 1 << 14
_FS_IOCTL_DEV = 1 << 15
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_SCOPE_SIGNAL = 1 << 1

READ_EXEC = _FS_READ_FILE | _FS_READ_DIR | _FS_EXECUTE
READ = _FS_READ_FILE | _FS_READ_DIR
READ_WRITE_FILES = _FS_READ_FILE | _FS_READ_DIR | _FS_WRITE_FILE

_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2
_CAP_VERSION_3 = 0x20080522

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def join_cgroups(fds: list[int]) -> None:
    """Join the run's cgroups through ``cgroup.procs`` files the host opened ("0" means: me)."""
    for fd in fds:
        os.write(fd, b"0")
        os.close(fd)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount_fs(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def make_mounts_private() -> None:
    """Mounts made after this stay in this namespace."""
    mount_fs("none", "/", None, _MS_REC | _MS_PRIVATE)


def mount_proc() -> None:
    mount_fs("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)


def mount_scratch(target: str, size_bytes: int) -> None:
    mount_fs("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size_bytes},mode=0700")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Empty effective, permitted and inheritable sets (ambient follows); no_new_privs forbids regaining."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def set_rlimits(rlimits: dict) -> None:
    for name, (soft, hard) in rlimits.items():
        resource.setrlimit(_RLIMITS[name], (soft, hard))


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    abi = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return max(abi, 0)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _handled_fs(abi: int) -> int:
    handled = (1 << 13) - 1  # ABI 1: execute .. make_sym
    if abi >= 2:
        handled |= 1 << 13  # refer
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    return handled


def apply_landlock(rules: list[tuple[str, int]], abi: int, connect_ports: list[int] | None = None) -> None:
    """Allow only ``rules`` (path, access bits; ``-1`` = everything handled) to this process and its
    descendants; deny TCP (ABI 4+) but connecting to ``connect_ports`` (a run's network grants, served
    by its egress forwarder), abstract unix sockets and signals leaving the domain (ABI 6+)."""
    if abi <= 0:
        return
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP  # only connect_ports' rules grant any
        size = 16
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = 24
    ruleset = _check(
        _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0),
        "landlock_create_ruleset",
    )
    try:
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                allowed = handled if access == -1 else access & handled
                if not os.path.isdir(path):
                    allowed &= _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
                rule = _PathBeneath(allowed, fd)
                _check(
                    _libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                    f"landlock_add_rule {path}",
                )
            finally:
                os.close(fd)
        for port in (connect_ports or []) if abi >= 4 else []:
            net_rule = _NetPort(_NET_CONNECT_TCP, port)
            _check(
                _libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_NET_PORT, ctypes.byref(net_rule), 0),
                f"landlock_add_rule tcp port {port}",
            )
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompProgram:
    """A compiled filter held ready in memory, so that installing it is one ``prctl``."""

    def __init__(self, bpf: bytes) -> None:
        if len(bpf) % 8:
            raise ValueError("seccomp program length is not a multiple of 8")
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._fprog = _SockFprog(len(bpf) // 8, ctypes.cast(self._buffer, ctypes.c_void_p))
        self.empty = not bpf

    def install(self) -> None:
        if self.empty:
            return
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0), "seccomp")


def load_seccomp(bpf: bytes) -> None:
    """Install a classic-BPF seccomp filter the host compiled (8 bytes per instruction)."""
    SeccompProgram(bpf).install()
