"""What the guest sees inside the strict sandbox: fixed paths, environment and Landlock rules.

One definition shared by the cold strict backend and the fork server, so that a handler sees the
same world whichever way it is dispatched.
"""

from __future__ import annotations

from rh_sandbox.guest.confine import READ, READ_EXEC, READ_WRITE_FILES

__all__ = [
    "PLUGINS_MOUNT",
    "PLUGIN_MOUNT",
    "RUNTIME_MOUNT",
    "SCRATCH",
    "landlock_rules",
    "sandbox_environment",
    "worker_environment",
]

RUNTIME_MOUNT = "/rh"  # the guest runtime dir: site/ (SDK, msgspec, boot scripts) and seccomp.bpf
PLUGIN_MOUNT = "/plugin"  # the plugin of a cold strict run
PLUGINS_MOUNT = "/plugins"  # the fork server's plugin dirs: /plugins/<n>
SCRATCH = "/tmp"  # private, size-bounded tmpfs; cwd, HOME and TMPDIR


def sandbox_environment(scratch: str = SCRATCH) -> dict[str, str]:
    """A Python guest's whole environment, sandboxed or not (``scratch``: its cwd): nothing of the host's."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": scratch,
        "TMPDIR": scratch,
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per thread arena otherwise
    }


def worker_environment(scratch: str | None = None) -> dict[str, str]:
    """A WASM worker's whole environment: a locale and a bare PATH (sandboxed: ``scratch`` as HOME)."""
    env = {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
    if scratch is not None:
        env |= {"HOME": scratch, "TMPDIR": scratch}
    return env


def landlock_rules(
    plugin_dir: str | None = None, *, read: tuple[str, ...] = (), full: tuple[str, ...] = ()
) -> list[tuple[str, int]]:
    """Read (and execute) the system, the runtime and this run's plugin, read ``read``; write only the
    scratch dir and ``full`` (everything Landlock handles)."""
    return [
        ("/usr", READ_EXEC),
        (RUNTIME_MOUNT, READ_EXEC),
        *([(plugin_dir, READ_EXEC)] if plugin_dir is not None else []),
        ("/proc", READ),
        *((path, READ) for path in read),
        ("/dev", READ_WRITE_FILES),
        (SCRATCH, -1),
        *((path, -1) for path in full),
    ]
