"""A uid per tenant: the range, the allocator, and what it keeps apart that namespaces do not."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rh_sandbox.linux.bwrap import setpriv_path
from rh_sandbox.linux.uids import DEFAULT_UIDS, SandboxUids, UidRange
from rh_sandbox.probe import probe
from rh_sandbox.python.forkserver import ForkServerBackend
from rh_sandbox.python.strict import StrictProcessBackend
from rh_sandbox.types import Limits, RunResult, RunStatus, SandboxError
from tests.sandbox.conftest import make_runner

# ---- the range ------------------------------------------------------------------------------


def test_a_range_parses_and_knows_its_members() -> None:
    uids = UidRange.parse(" 200000-200009 ")
    assert (uids.first, uids.last, len(uids), str(uids)) == (200000, 200009, 10, "200000-200009")
    assert 200000 in uids and 200009 in uids and 199999 not in uids and 200010 not in uids
    assert len(UidRange.parse("300000")) == 1
    assert DEFAULT_UIDS.first == 1_879_048_192 and len(DEFAULT_UIDS) == 65_536


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1000:2000", "expected FIRST-LAST"),
        ("abc-def", "expected FIRST-LAST"),
        ("5000-4000", "first uid is above the last"),
        ("0-5000", "must lie within 1000-2147483647"),
        ("999-5000", "must lie within"),
        ("2147483000-2147483648", "must lie within"),
        ("60000-70000", r"65534 \(nobody\)"),
        ("65535-65600", "65535"),
    ],
)
def test_a_bad_range_names_its_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        UidRange.parse(text)
    assert "\n" not in str(caught.value) and text in str(caught.value)


def test_the_cli_refuses_a_bad_range_in_one_line() -> None:
    from click.testing import CliRunner

    from rh_host.cli import main

    out = CliRunner().invoke(main, ["doctor", "--sandbox-uids", "60000-70000"])
    assert out.exit_code == 2
    assert "--sandbox-uids" in out.output and "65534 (nobody)" in out.output


# ---- the allocator --------------------------------------------------------------------------


def test_each_group_gets_a_uid_of_its_own_and_keeps_it() -> None:
    uids = SandboxUids(UidRange(1_900_000_000, 1_900_000_999))
    seen = {group: uids.uid_for(group) for group in (f"tenant-{n}" for n in range(200))}
    assert len(set(seen.values())) == 200
    assert all(uid in uids.range for uid in seen.values())
    assert all(uids.uid_for(group) == uid for group, uid in seen.items())


def test_another_allocator_picks_the_same_uid_for_the_same_group() -> None:
    """The slot comes from the group's name, so a second host process agrees with the first."""
    uid_range = UidRange(1_900_001_000, 1_900_001_999)
    one, two = SandboxUids(uid_range), SandboxUids(uid_range)
    first = {g: one.uid_for(g) for g in ("a", "b", "c")}
    assert first == {g: two.uid_for(g) for g in ("c", "b", "a")}  # whatever the order groups come in


def test_a_uid_another_host_process_claimed_goes_to_its_group_only() -> None:
    """Another host process's uid for a group is that group's, here too, before any sandbox of it
    runs (no process of the uid shows the claim): handing it to another group would make two tenants
    one uid. Its claim ends with that process."""
    uid_range = UidRange(1_900_007_000, 1_900_007_000)  # one uid: both groups want it
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom rh_sandbox.linux.uids import SandboxUids, UidRange\n"
         f"uids = SandboxUids(UidRange({uid_range.first}, {uid_range.last}))\n"
         "print(uids.uid_for('a'), flush=True)\n"
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other.stdout is not None and int(other.stdout.readline()) == uid_range.first
        with pytest.raises(SandboxError, match="no free sandbox uid"):
            SandboxUids(uid_range).uid_for("b")
        assert SandboxUids(uid_range).uid_for("a") == uid_range.first  # the same tenant: the same uid
    finally:
        other.communicate("", timeout=30)
    assert SandboxUids(uid_range).uid_for("b") == uid_range.first


@pytest.mark.usefixtures("needs_strict")
def test_the_probes_sandbox_never_runs_as_a_tenants_uid() -> None:
    """``doctor`` (or ``serve``'s check) beside a host: the probe claims a uid of its own like a
    tenant does, never the uid another process gave a tenant (it used to run as the range's first
    uid, whoever had it). In a range with no uid left, it checks the sandbox as ``nobody``."""
    uid_range = UidRange(1_900_008_000, 1_900_008_001)
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom rh_sandbox.linux.uids import SandboxUids, UidRange\n"
         f"uids = SandboxUids(UidRange({uid_range.first}, {uid_range.first}))\n"
         "print(uids.uid_for('tenant-a'), flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other.stdout is not None and int(other.stdout.readline()) == uid_range.first
        probed = probe(SandboxUids(uid_range))
        assert probed.strict_sandbox_works, probed.strict_problem
        assert probed.probe_uid == uid_range.last  # the one no tenant has
        full = probe(SandboxUids(UidRange(uid_range.first, uid_range.first)))
        assert full.strict_sandbox_works and full.probe_uid == 65534
    finally:
        other.communicate("", timeout=30)


def test_a_full_range_is_a_clear_error() -> None:
    uids = SandboxUids(UidRange(1_900_002_000, 1_900_002_001))
    assert {uids.uid_for("a"), uids.uid_for("b")} == {1_900_002_000, 1_900_002_001}
    with pytest.raises(SandboxError, match=r"no free sandbox uid in 1900002000-1900002001: 2 groups .* --sandbox-uids"):
        uids.uid_for("c")
    assert uids.uid_for("a") in uids.range  # the groups that have one keep it


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a process as another uid needs root")
def test_a_uid_a_running_process_holds_is_skipped() -> None:
    """Another host process (or anything else) running as the slot's uid: that uid is not handed out."""
    uid_range = UidRange(1_900_003_000, 1_900_003_099)
    wanted = SandboxUids(uid_range).uid_for("tenant-x")
    holder = subprocess.Popen([setpriv_path() or "setpriv", f"--reuid={wanted}", f"--regid={wanted}", "--clear-groups",
                               "sleep", "30"])  # fmt: skip
    try:
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{holder.pid}").st_uid != wanted and time.monotonic() < deadline:
            time.sleep(0.01)  # until setpriv has dropped to the uid
        got = SandboxUids(uid_range).uid_for("tenant-x")
        assert got != wanted and got in uid_range
    finally:
        holder.kill()
        holder.wait()
    assert SandboxUids(uid_range).uid_for("tenant-x") == wanted


def test_a_range_over_a_subordinate_range_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:1900004010:20\nbroken line\nbob:100000:65536\n")
    monkeypatch.setattr("rh_sandbox.linux.uids._SUBID_FILES", (str(subuid),))
    uids = SandboxUids(UidRange(1_900_004_000, 1_900_004_039))
    assert uids.conflicts() == [f"{subuid} range of 'alice' (1900004010-1900004029)"]
    handed = {uids.uid_for(f"g{n}") for n in range(20)}
    assert handed == set(range(1_900_004_000, 1_900_004_010)) | set(range(1_900_004_030, 1_900_004_040))
    with pytest.raises(SandboxError, match="no free sandbox uid"):
        uids.uid_for("one-too-many")


def test_the_default_range_overlaps_nothing_here() -> None:
    assert SandboxUids().conflicts() == []


def test_a_backend_refuses_a_range_that_overlaps_a_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A sandbox sharing a uid with a real user could be signalled or traced by that user: refused."""
    from rh_sandbox.factory import make_python_backend
    from rh_sandbox.probe import probe

    subuid = tmp_path / "subuid"
    subuid.write_text("carol:1900005000:65536\n")
    monkeypatch.setattr("rh_sandbox.linux.uids._SUBID_FILES", (str(subuid),))
    uids = SandboxUids(UidRange(1_900_005_000, 1_900_005_099))
    probed = probe(uids)
    if not probed.strict_sandbox_works or not probed.running_as_root:
        pytest.skip(f"the uid range is used only by the strict sandbox as root: {probed.strict_problem}")
    with pytest.raises(SandboxError, match=r"sandbox uid range 1900005000-1900005099 overlaps .*'carol'"):
        make_python_backend("auto", probed=probed, uids=uids)


@pytest.mark.timeout(60)
def test_serve_refuses_to_start_with_an_overlapping_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Checked before the server listens: a misconfigured host stops at once, in one line."""
    from click.testing import CliRunner

    from rh_host.cli import main
    from rh_sandbox.probe import probe

    subuid = tmp_path / "subuid"
    subuid.write_text("dave:1900006000:65536\n")
    monkeypatch.setattr("rh_sandbox.linux.uids._SUBID_FILES", (str(subuid),))
    probed = probe(SandboxUids(UidRange(1_900_006_000, 1_900_006_099)))
    if not probed.strict_sandbox_works or not probed.running_as_root:
        pytest.skip(f"the uid range is used only by the strict sandbox as root: {probed.strict_problem}")
    args = ["serve", "--port", "1", "--data-dir", str(tmp_path / "data"), "--sandbox-uids", "1900006000-1900006099"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 1, out.output
    assert out.output.count("\n") == 1 and out.output.startswith("rh-host: error: cannot serve: sandbox uid range")
    assert "'dave'" in out.output and "--sandbox-uids" in out.output
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())  # nothing was set up


# ---- what a uid of its own keeps apart ------------------------------------------------------

WHOAMI = """
import os

from rh_sdk import ResultHandler


class WhoAmI(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
"""

# Takes every inotify instance the kernel lets its uid have (fs.inotify.max_user_instances, 128 by
# default: counted per real uid, across every namespace), then holds them until the test lets go.
INOTIFY = """
import ctypes
import os
import time

from rh_sdk import ResultHandler

HERE = os.path.dirname(os.path.abspath(__file__))


class Hog(ResultHandler):
    def handle(self, batch_id, results, metadata):
        libc = ctypes.CDLL(None, use_errno=True)
        held = []
        while len(held) < 4096:
            fd = libc.inotify_init1(os.O_CLOEXEC)
            if fd < 0:
                break
            held.append(fd)
        if self.config.get("hold"):
            deadline = time.monotonic() + 15
            while not os.path.exists(os.path.join(HERE, "release")) and time.monotonic() < deadline:
                time.sleep(0.02)
        return {"instances": len(held), "errno": ctypes.get_errno()}
"""


def _plugin(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(mode=0o755)
    for name, text in files.items():
        (path / name).write_text(text)
        (path / name).chmod(0o644)
    return path


@pytest.fixture
def fork_server() -> Iterator[ForkServerBackend]:
    with ForkServerBackend(prefork=1, uids=SandboxUids(UidRange(1_900_010_000, 1_900_010_999))) as backend:
        yield backend


@pytest.mark.usefixtures("needs_strict")
@pytest.mark.skipif(os.geteuid() != 0, reason="without root every sandbox runs as the host's own uid")
def test_each_tenant_runs_as_its_own_uid_warm_and_cold(fork_server: ForkServerBackend, world_dir: Path) -> None:
    plugin = _plugin(world_dir / "whoami", {"whoami.py": WHOAMI})
    run = make_runner(fork_server)
    a, b = (run(plugin, "whoami:WhoAmI", group=g) for g in ("tenant-a", "tenant-b"))
    assert a.status is RunStatus.OK and b.status is RunStatus.OK, (a.error, b.error)
    uid_a, uid_b = fork_server.uids.uid_for("tenant-a"), fork_server.uids.uid_for("tenant-b")
    assert uid_a != uid_b
    assert a.reply.output == {"uid": uid_a, "gid": uid_a, "groups": []}
    assert b.reply.output == {"uid": uid_b, "gid": uid_b, "groups": []}
    assert run(plugin, "whoami:WhoAmI", group="tenant-a").reply.output["uid"] == uid_a  # the same next time
    # a cold strict sandbox (runs with network grants take one) of the same tenant: the same uid
    cold = make_runner(StrictProcessBackend(uids=fork_server.uids))(plugin, "whoami:WhoAmI", group="tenant-b")
    assert cold.status is RunStatus.OK and cold.reply.output["uid"] == uid_b


def _inotify_instances(uid: int) -> int:
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            continue
    return count


@pytest.mark.usefixtures("needs_strict")
@pytest.mark.skipif(os.geteuid() != 0, reason="without root every sandbox runs as the host's own uid")
def test_a_tenant_holding_every_inotify_instance_leaves_others_theirs(
    fork_server: ForkServerBackend, world_dir: Path
) -> None:
    """The kernel counts inotify instances per real uid, through every namespace: with one uid for
    all tenants, the hog below left the well-behaved tenant none (errno EMFILE)."""
    hog_dir = _plugin(world_dir / "hog", {"hog.py": INOTIFY})
    limits = Limits(wall_seconds=30, max_open_files=1024)
    run = make_runner(fork_server)
    hog: list[RunResult] = []
    holder = threading.Thread(
        target=lambda: hog.append(run(hog_dir, "hog:Hog", {"hold": True}, group="tenant-hog", limits=limits))
    )
    holder.start()
    try:
        hog_uid, deadline = fork_server.uids.uid_for("tenant-hog"), time.monotonic() + 20
        while _inotify_instances(hog_uid) < 100 and time.monotonic() < deadline and holder.is_alive():
            time.sleep(0.02)
        assert _inotify_instances(hog_uid) >= 100, hog  # the hog holds them now
        other = run(hog_dir, "hog:Hog", group="tenant-well-behaved", limits=limits)
        assert other.status is RunStatus.OK, (other.error, other.logs)
        assert other.reply.output["instances"] >= 100, other.reply.output  # its own full allowance
    finally:
        (hog_dir / "release").write_text("")
        holder.join(30)
    assert hog and hog[0].status is RunStatus.OK, hog
    assert hog[0].reply.output["instances"] >= 100
