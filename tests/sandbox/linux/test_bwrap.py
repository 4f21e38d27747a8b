"""The strict argv and the seccomp policy: the order and the parts that make it safe."""

from __future__ import annotations

import os

import pytest

from rh_sandbox.linux.bwrap import strict_command
from rh_sandbox.linux.seccomp import compile_filter, seccomp_available

UID = 1_879_048_200


def test_uid_is_dropped_before_bwrap_when_root() -> None:
    argv = strict_command(["/usr/bin/python3", "-c", "pass"], uid=UID, ro_binds=[("/srv/p", "/plugin")])
    if os.geteuid() == 0:
        assert os.path.basename(argv[0]) == "setpriv"
        assert f"--reuid={UID}" in argv and f"--regid={UID}" in argv and "--clear-groups" in argv
        assert "--no-new-privs" in argv
        assert argv.index("--") < argv.index(next(a for a in argv if a.endswith("bwrap")))
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--share-net" not in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert "--clearenv" in argv


def test_binds_come_after_the_tmpfs_that_would_hide_them() -> None:
    argv = strict_command(["/usr/bin/python3"], uid=UID, ro_binds=[("/tmp/venv", "/tmp/venv")], scratch_mb=8)
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 1] == "/tmp"
    size = argv.index("--size")
    assert size < tmpfs and argv[size + 1] == str(8 * 1024 * 1024)
    assert argv.index("/tmp/venv") > tmpfs


def test_no_host_state_is_bound() -> None:
    argv = strict_command(["/usr/bin/python3"], uid=UID)
    bound = {argv[i + 2] for i, a in enumerate(argv) if a in ("--ro-bind", "--bind")}
    assert not bound & {"/etc", "/var", "/root", "/home", "/run", "/tmp"}


@pytest.mark.skipif(seccomp_available() is not None, reason="pyseccomp/libseccomp unavailable")
def test_seccomp_filter_compiles_to_bpf() -> None:
    bpf = compile_filter()
    assert len(bpf) > 8 and len(bpf) % 8 == 0
    assert compile_filter(allow_network=True) != bpf
