"""What the guest sees: one environment per kind of guest and one Landlock rule list, built in one place."""

from __future__ import annotations

from rh_sandbox.guest.confine import READ, READ_EXEC, READ_WRITE_FILES
from rh_sandbox.linux.layout import RUNTIME_MOUNT, SCRATCH, landlock_rules, sandbox_environment, worker_environment


def test_a_python_guest_sees_nothing_of_the_hosts_environment() -> None:
    assert sandbox_environment() == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": SCRATCH,
        "TMPDIR": SCRATCH,
        "MALLOC_ARENA_MAX": "2",
    }
    basic = sandbox_environment("/tmp/rh-run-x")  # the basic level: its own scratch dir on the host
    assert basic["HOME"] == basic["TMPDIR"] == "/tmp/rh-run-x"


def test_a_wasm_worker_gets_a_locale_and_a_bare_path() -> None:
    assert worker_environment() == {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
    assert worker_environment(SCRATCH) == {
        "LANG": "C.UTF-8",
        "PATH": "/usr/bin:/bin",
        "HOME": SCRATCH,
        "TMPDIR": SCRATCH,
    }


def test_a_python_run_reads_its_plugin_and_writes_only_its_scratch_dir() -> None:
    assert landlock_rules("/plugin") == [
        ("/usr", READ_EXEC),
        (RUNTIME_MOUNT, READ_EXEC),
        ("/plugin", READ_EXEC),
        ("/proc", READ),
        ("/dev", READ_WRITE_FILES),
        (SCRATCH, -1),
    ]


def test_a_wasm_worker_adds_what_it_reads_and_its_cache() -> None:
    rules = landlock_rules(read=("/etc/ssl/certs",), full=("/cache",))
    assert ("/etc/ssl/certs", READ) in rules and ("/cache", -1) in rules
    assert all(access != READ_EXEC for path, access in rules if path not in ("/usr", RUNTIME_MOUNT))  # no plugin dir
    assert [path for path, access in rules if access == -1] == [SCRATCH, "/cache"]
