"""What the guest sees inside the strict sandbox: fixed paths, environment and Landlock rules.

One definition shared by the cold strict backend and the fork server, so that a handler sees the
same world whichever way it is dispatched.
"""

from __future__ import annotations

from rh_sandbox._confine import READ, READ_EXEC, READ_WRITE_FILES

__all__ = ["PLUGINS_MOUNT", "PLUGIN_MOUNT", "RUNTIME_MOUNT", "SCRATCH", "landlock_rules", "sandbox_environment"]

RUNTIME_MOUNT = "/rh"  # the guest runtime dir: site/ (SDK, msgspec, boot scripts) and the seccomp filters
PLUGIN_MOUNT = "/plugin"  # the plugin of a cold strict run
PLUGINS_MOUNT = "/plugins"  # the fork server's plugin dirs: /plugins/<n>
SCRATCH = "/tmp"  # private, size-bounded tmpfs; cwd, HOME and TMPDIR


def sandbox_environment() -> dict[str, str]:
    """The guest's whole environment: nothing of the host's."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": SCRATCH,
        "TMPDIR": SCRATCH,
        "MALLOC_ARENA_MAX": "2",
    }


def landlock_rules(plugin_dir: str) -> list[tuple[str, int]]:
    """Read (and execute) the system, the runtime and this run's plugin; write only the scratch dir."""
    return [
        ("/usr", READ_EXEC),
        (RUNTIME_MOUNT, READ_EXEC),
        (plugin_dir, READ_EXEC),
        ("/proc", READ),
        ("/dev", READ_WRITE_FILES),
        (SCRATCH, -1),  # everything Landlock handles
    ]
