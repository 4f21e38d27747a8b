"""The strict sandbox as one argv: setpriv drops the real uid, then bubblewrap builds the namespaces.

Why setpriv first: as root, ``bwrap --uid 65534`` maps the sandbox uid to real root outside, and
the guest could read root-only files (measured on this kind of machine). With the real uid dropped
before bwrap runs (to the group's own uid), the user namespace maps that uid to itself, so the
kernel's ordinary permission checks hold even if every other wall fails.

Layout seen inside: ``/usr`` (and the usual ``/lib`` ``/bin`` symlinks) read-only, ``/rh`` the guest
runtime read-only, the given extra read-only binds (the plugin), a size-bounded private ``/tmp``
(also the scratch dir and cwd), a fresh ``/proc`` and a minimal ``/dev``. Nothing else: no ``/etc``,
``/var``, ``/root``, ``/home``, ``/run`` (so no host unix socket by path), no network (a private
``lo`` only, so no abstract unix socket of the host either).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "SANDBOX_GID",
    "SANDBOX_UID",
    "bwrap_exit_code",
    "bwrap_version",
    "drop_uid_prefix",
    "start_sandboxed",
    "strict_command",
]

SANDBOX_UID = 65534  # nobody: runs no plugin's code (the bytecode compiler); each group has its own uid
SANDBOX_GID = 65534  # nogroup
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_DEVICES = ("null", "zero", "full", "random", "urandom")


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


def setpriv_path() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin:/usr/local/bin")


def bwrap_version() -> str | None:
    import subprocess

    path = bwrap_path()
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return None
    return out.stdout.strip().removeprefix("bubblewrap ").strip() or None


def bwrap_exit_code(returncode: int | None) -> int | None:
    """bwrap reports a guest killed by signal N as exit status 128+N; give it back as -N."""
    if returncode is not None and 128 < returncode <= 128 + signal.NSIG:
        return -(returncode - 128)
    return returncode


def drop_uid_prefix(uid: int = SANDBOX_UID, gid: int = SANDBOX_GID) -> list[str]:
    """setpriv: unprivileged real uid/gid, no groups, no capabilities, no_new_privs; then exec."""
    if os.geteuid() != 0:
        return []  # already unprivileged: bwrap's user namespace maps our own uid
    return [
        setpriv_path() or "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def _system_mounts(interpreter: str) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for link in _ROOT_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    prefix = Path(os.path.realpath(interpreter)).parent.parent
    if not str(prefix).startswith("/usr"):
        args += ["--ro-bind", str(prefix), str(prefix)]  # an interpreter installed elsewhere (/opt)
    return args


def _device_binds() -> list[str]:
    """``/dev`` without bwrap's ``--dev``: that one mounts a devpts, for which bwrap runs the guest in a
    nested user namespace, away from the one owning the network namespace. The same device nodes
    ``--dev`` binds, without a pty."""
    args = ["--tmpfs", "/dev"]
    for name in _DEVICES:
        args += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        args += ["--symlink", target, f"/dev/{link}"]
    return [*args, "--symlink", "/proc/self/fd/2", "/dev/stderr"]


def strict_command(
    argv: Sequence[str],
    *,
    uid: int,
    ro_binds: Iterable[tuple[str, str]] = (),
    scratch_mb: int = 64,
    env: Mapping[str, str] | None = None,
    cap_add: Iterable[str] = (),
    share_net: bool = False,
    interpreter: str | None = None,
    binds: Iterable[tuple[str, str]] = (),
    disable_userns: bool = True,
) -> list[str]:
    """Wrap ``argv`` in the strict sandbox, run as real ``uid`` (and gid of the same number: one per
    group, see :mod:`rh_sandbox.linux.uids`). ``ro_binds`` and ``binds`` (read-write) are (host path,
    sandbox path) pairs.

    ``disable_userns=False`` keeps the guest in the user namespace that owns its network namespace, so
    that a ``cap_add`` of CAP_NET_BIND_SERVICE can bind ports below 1024 on the sandbox's own ``lo``
    (with bwrap's ``--disable-userns`` or ``--dev`` the guest sits in a nested namespace and the cap
    does nothing; ``/dev`` is then built from binds instead).
    The boot script drops that cap before plugin code, and seccomp refuses new namespaces either way.

    ``cap_add`` keeps capabilities inside the sandbox's own user namespace only (the fork server
    needs CAP_SYS_ADMIN there to give each child its own PID and mount namespace; its children drop
    it before any plugin code). The WASM worker uses this function with its own binds.
    """
    bwrap = bwrap_path() or "bwrap"
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        *(["--disable-userns"] if disable_userns else []),
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    if share_net:
        args.append("--share-net")
    for cap in cap_add:
        args += ["--cap-add", cap]
    args += ["--hostname", "sandbox", "--clearenv"]
    for key, value in (env or {}).items():
        args += ["--setenv", key, value]
    args += _system_mounts(interpreter or argv[0])
    args += ["--proc", "/proc", *(["--dev", "/dev"] if disable_userns else _device_binds())]
    args += ["--size", str(scratch_mb * 1024 * 1024), "--perms", "0700", "--tmpfs", "/tmp"]
    for source, target in ro_binds:  # after /tmp: a tmpfs mounted later would hide binds beneath it
        args += ["--ro-bind", source, target]
    for source, target in binds:
        args += ["--bind", source, target]
    args += ["--chdir", "/tmp", "--", *argv]
    return drop_uid_prefix(uid, uid) + args


def start_sandboxed(
    argv: Sequence[str],
    *,
    stdin: int | IO[Any] | None,
    stdout: int | IO[Any] | None,
    stderr: int | IO[Any] | None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start a :func:`strict_command` from the host: from ``/``, in a session of its own (a signal to
    the host's process group never reaches it), with no descriptor but ``pass_fds`` and a bare
    ``PATH`` (bwrap's ``--clearenv`` gives the guest its own environment)."""
    return subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        start_new_session=True,
        close_fds=True,
        pass_fds=pass_fds,
    )
