"""The factory: the backend for an isolation setting, and the host's dispatcher over both runtimes."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rh_sandbox.dispatch import GrantedRunsApart
from rh_sandbox.factory import check_isolation, make_dispatcher, make_python_backend
from rh_sandbox.linux.cgroups import group_dir_name
from rh_sandbox.linux.uids import UidRange
from rh_sandbox.probe import Probe, probe
from rh_sandbox.python.forkserver import ForkServerBackend
from rh_sandbox.python.process import ProcessBackend
from rh_sandbox.python.strict import StrictProcessBackend
from rh_sandbox.types import RunSpec, RunStatus, SandboxError
from rh_sdk.protocol import Invocation, encode_invocation
from tests.sandbox.wasm.wasm_guests import replying


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SandboxError, match="unknown isolation setting"):
        make_python_backend("paranoid")


def test_strict_demanded_but_unavailable_refuses() -> None:
    without = Probe(strict_problem="bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxError, match="bubblewrap"):
        make_python_backend("strict", probed=without)


def test_the_check_serve_runs_before_it_listens() -> None:
    without = Probe(strict_problem="bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxError, match="isolation 'strict' demanded but unavailable here: bubblewrap"):
        check_isolation("strict", without)
    assert check_isolation("auto", without) is None  # basic, with the warning
    assert check_isolation("basic") is None  # no probe at all
    overlapping = Probe(
        strict_sandbox_works=True, sandbox_uids="2000-2999", sandbox_uid_conflicts=["user 'eve' (uid 2001)"]
    )
    for setting in ("auto", "strict"):
        with pytest.raises(SandboxError, match=r"sandbox uid range 2000-2999 overlaps user 'eve' \(uid 2001\)"):
            check_isolation(setting, overlapping)
    works = Probe(strict_sandbox_works=True, sandbox_uids="2000-2999")
    assert check_isolation("auto", works) is works


def test_auto_degrades_loudly(caplog: pytest.LogCaptureFixture) -> None:
    without = Probe(strict_problem="user namespaces are disabled")
    with caplog.at_level(logging.WARNING, logger="rh.sandbox"):
        backend = make_python_backend("auto", probed=without)
    try:
        assert isinstance(backend, ProcessBackend) and backend.isolation.value == "basic"
        assert any("ISOLATION DEGRADED" in r.getMessage() for r in caplog.records)
    finally:
        backend.close()


def test_basic_never_uses_namespaces() -> None:
    backend = make_python_backend("basic")
    try:
        assert type(backend) is ProcessBackend
    finally:
        backend.close()


@pytest.mark.usefixtures("needs_strict")
def test_strict_backends(machine: Probe) -> None:
    cold = make_python_backend("strict", warm=False, probed=machine)
    warm = make_python_backend("strict", warm=True, probed=machine)
    try:
        assert type(cold) is StrictProcessBackend
        assert type(warm) is GrantedRunsApart and type(warm.warm) is ForkServerBackend
        assert type(warm.granted()) is StrictProcessBackend  # runs with network grants: cold, with egress
    finally:
        cold.close()
        warm.close()


WHOAMI = """
import os

from rh_sdk import ResultHandler


class WhoAmI(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"uid": os.getuid()}
"""


@pytest.fixture
def plugins() -> Iterator[Path]:
    """Plugin dirs every uid can read (the Python sandbox binds them as the tenant's uid)."""
    root = Path(tempfile.mkdtemp(prefix="rh-test-", dir="/tmp"))
    os.chmod(root, 0o755)
    wat_ok = replying({"ran": True, "ok": True})
    for name, file, text in (("whoami", "whoami.py", WHOAMI), ("ok", "handler.wat", wat_ok)):
        (root / name).mkdir(mode=0o755)
        (root / name / file).write_text(text)
        (root / name / file).chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_tenants_python_and_wasm_runs_share_its_uid(plugins: Path) -> None:
    machine = probe()
    if not machine.strict_sandbox_works:
        pytest.skip(f"strict sandbox unavailable here: {machine.strict_problem}")
    payload = encode_invocation(Invocation(batch_id="b", handler="whoami:WhoAmI", config={}, results=[]))
    uid_range = UidRange(1_900_020_000, 1_900_020_999)
    with tempfile.TemporaryDirectory(prefix="rh-wasm-cache-", dir="/tmp") as cache:
        os.chmod(cache, 0o755)
        with make_dispatcher("strict", wasm_cache_dir=Path(cache), sandbox_uids=uid_range) as dispatcher:
            uids = {}
            for group in ("tenant-a", "tenant-b"):
                python = dispatcher.run(
                    RunSpec(name="who", runtime="python", plugin_dir=str(plugins / "whoami"), entry="whoami:WhoAmI",
                            group=group),
                    payload,
                )  # fmt: skip
                assert python.status is RunStatus.OK, python.error
                wasm_spec = RunSpec(
                    name="ok", runtime="wasm", plugin_dir=str(plugins / "ok"), entry="handler.wat", encoding="json",
                    group=group,
                )  # fmt: skip
                wasm = dispatcher.run(wasm_spec, b"{}")
                assert wasm.status is RunStatus.OK and wasm.isolation.startswith("strict"), wasm.error
                uids[group] = python.reply.output["uid"]
                # the worker ran as the uid that owns the tenant's compiled-module cache
                assert (Path(cache) / hashlib.sha256(group.encode()).hexdigest()[:32]).stat().st_uid == uids[group]
            assert uids["tenant-a"] != uids["tenant-b"]
            assert all(uid in uid_range for uid in uids.values())


def test_the_dispatchers_group_task_total_reaches_both_runtimes(plugins: Path) -> None:
    machine = probe()
    if not machine.strict_sandbox_works or "pids" not in machine.cgroup_v1_controllers:
        pytest.skip("needs the strict sandbox and the cgroup v1 pids hierarchy (its group dirs are shared)")
    payload = encode_invocation(Invocation(batch_id="b", handler="whoami:WhoAmI", config={}, results=[]))
    group = f"task-total-{os.getpid()}"
    total = Path("/sys/fs/cgroup/pids/rh-host") / group_dir_name(group) / "pids.max"
    with tempfile.TemporaryDirectory(prefix="rh-wasm-cache-", dir="/tmp") as cache:
        os.chmod(cache, 0o755)
        with make_dispatcher("strict", wasm_cache_dir=Path(cache), group_max_tasks=77) as dispatcher:
            spec = RunSpec(name="who", runtime="python", plugin_dir=str(plugins / "whoami"), entry="whoami:WhoAmI",
                           group=group)  # fmt: skip
            assert dispatcher.run(spec, payload).status is RunStatus.OK
            assert total.read_text().strip() == "77"  # the Python backend set it
            total.write_text("max")  # the WASM backend sets it again when it first uses the group's dir
            wasm_spec = RunSpec(name="ok", runtime="wasm", plugin_dir=str(plugins / "ok"), entry="handler.wat",
                                encoding="json", group=group)  # fmt: skip
            assert dispatcher.run(wasm_spec, b"{}").status is RunStatus.OK
            assert total.read_text().strip() == "77"
