"""The seccomp policy of the strict level, compiled once on the host into classic BPF.

The guest installs the bytes with one ``prctl`` (see ``rh_sandbox.guest.confine.load_seccomp``), so the sandbox needs
neither libseccomp nor pyseccomp. A deny-list on top of the namespaces: the kernel interfaces that
no result handler needs and that are the usual escape or snooping routes.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import socket
import tempfile
from pathlib import Path

__all__ = ["DENIED_SYSCALLS", "compile_filter", "seccomp_available", "write_filter"]

DENIED_SYSCALLS = (
    # other processes and the kernel's keyrings
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "keyctl", "add_key", "request_key",
    # namespaces and mounts: the sandbox's walls
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "mount_setattr",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "open_by_handle_at", "name_to_handle_at",
    # kernel extension and tracing surfaces
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    # SysV IPC and POSIX message queues: their objects live in the IPC namespace, which a group's
    # runs share with its zygote, not in a run (a segment outlived its run, readable by the next)
    "shmget", "shmat", "shmctl", "shmdt", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # the machine's state
    "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "settimeofday", "clock_settime",
    "adjtimex", "clock_adjtime", "iopl", "ioperm", "vhangup", "personality",
)  # fmt: skip

# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


def seccomp_available() -> str | None:
    """None when a filter can be compiled here, else why not."""
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"pyseccomp/libseccomp unavailable: {exc}"
    return None


@functools.cache
def compile_filter(*, allow_network: bool = False) -> bytes:
    """The strict policy as BPF bytes for this machine's architecture.

    Without ``allow_network`` only unix sockets can be created; with it (runs that have network grants)
    IPv4 too, which reaches nothing but the sandbox's own ``lo`` where the egress forwarder listens.
    """
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(eperm, name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a syscall on this architecture
    # clone3 takes its flags in a struct a filter cannot read: ENOSYS makes libc fall back to clone
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NAMESPACE_FLAGS:  # rules for one syscall are or-ed: any namespace flag is refused
        flt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    no_family = sc.ERRNO(errno.EAFNOSUPPORT)
    if allow_network:  # a run with grants: IPv4 on its own lo (its egress forwarder) and unix sockets
        flt.add_rule(no_family, "socket", sc.Arg(0, sc.GT, socket.AF_INET))
        flt.add_rule(no_family, "socket", sc.Arg(0, sc.EQ, socket.AF_UNSPEC))
    else:
        flt.add_rule(no_family, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    flt.add_rule(no_family, "socketpair", sc.Arg(0, sc.NE, socket.AF_UNIX))
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


def write_filter(directory: Path, *, allow_network: bool = False) -> Path:
    """Compile the filter into ``directory`` (world-readable); return its path. The file is named by
    its content: a runtime dir built before the policy changed gets the new filter beside the old."""
    data = compile_filter(allow_network=allow_network)
    name = f"seccomp-{'net-' if allow_network else ''}{hashlib.sha256(data).hexdigest()[:16]}.bpf"
    path = directory / name
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=directory)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return path
