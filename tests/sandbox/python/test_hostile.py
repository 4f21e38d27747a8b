"""Hostile handlers at the strongest level, each followed by a well-behaved one that must succeed.

Run against the warm fork server (pre-forked and fork-on-demand) and the cold strict sandbox.
"""

from __future__ import annotations

import contextlib
import os
import py_compile
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import rh_sandbox.decoded as decoded_module
from rh_sandbox.python.forkserver import ChildState, ForkServerBackend
from rh_sandbox.python.strict import StrictProcessBackend
from rh_sandbox.types import Limits, RunResult, RunStatus
from tests.sandbox.conftest import Run, copy_plugin, make_runner

pytestmark = pytest.mark.usefixtures("needs_strict")


@pytest.fixture(scope="module", params=["prefork", "forkserver", "cold"])
def backend(request: pytest.FixtureRequest, machine) -> Iterator[object]:
    if not machine.strict_sandbox_works:
        pytest.skip(f"strict sandbox unavailable here: {machine.strict_problem}")
    if request.param == "cold":
        cold = StrictProcessBackend()
        yield cold
        cold.close()  # unpins its groups' dirs
        return
    with ForkServerBackend(prefork=1 if request.param == "prefork" else 0) as b:
        yield b


@pytest.fixture
def run(backend: object) -> Run:
    return make_runner(backend)


@pytest.fixture
def plugins(world_dir: Path) -> dict[str, Path]:
    return {
        "hostile": copy_plugin("hostile", world_dir / "hostile", mode=0o777),
        "good": copy_plugin("good", world_dir / "good"),
    }


def assert_good_still_runs(run: Run, plugins: dict[str, Path]) -> None:
    result = run(plugins["good"], "good:Good")
    assert result.status is RunStatus.OK, (result.error, result.logs)
    assert result.reply is not None and result.reply.output["count"] == 1
    assert result.isolation.startswith("strict")


def refused(observation: dict) -> bool:
    return observation["ok"] is False


def test_other_tenant_and_host_data_invisible(run: Run, plugins: dict[str, Path], world_dir: Path) -> None:
    other = copy_plugin("good", world_dir / "other-tenant")
    (other / "secret.txt").write_text("other tenant's secret")
    os.chmod(other / "secret.txt", 0o644)
    data_dir = world_dir / "host-data"
    data_dir.mkdir(mode=0o755)
    (data_dir / "rh.sqlite").write_text("host database")
    os.chmod(data_dir / "rh.sqlite", 0o644)
    paths = [str(other / "secret.txt"), str(other), str(data_dir / "rh.sqlite")]
    paths += ["/var/lib/rh-host", "/root", "/etc/passwd", "/"]
    result = run(plugins["hostile"], "hostile:ReadPaths", {"paths": paths})
    assert result.status is RunStatus.OK, result.error
    for path, observation in result.reply.output.items():
        assert refused(observation), f"{path} was readable: {observation}"
    assert_good_still_runs(run, plugins)


def test_network_and_host_sockets_unreachable(run: Run, plugins: dict[str, Path], world_dir: Path) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    unix_path = world_dir / "service.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(unix_path))
    unix.listen()
    os.chmod(unix_path, 0o777)
    abstract_name = f"rh-test-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    try:
        config = {"tcp": ["127.0.0.1", tcp.getsockname()[1]], "unix": str(unix_path), "abstract": abstract_name}
        result = run(plugins["hostile"], "hostile:Connect", config)
    finally:
        for s in (tcp, unix, abstract):
            s.close()
    assert result.status is RunStatus.OK, result.error
    for kind, observation in result.reply.output.items():
        assert refused(observation), f"{kind} connect went through: {observation}"
    assert_good_still_runs(run, plugins)


def test_cannot_see_environ_or_kill_other_processes(run: Run, plugins: dict[str, Path]) -> None:
    secret = f"token-{uuid.uuid4().hex}"
    bystander = subprocess.Popen(["sleep", "60"], env={"RH_SECRET": secret})
    try:
        result = run(plugins["hostile"], "hostile:ProcSnoop", {"kill": True})
        assert result.status in (RunStatus.OK, RunStatus.CRASHED), result.error
        if result.reply is not None:
            output = result.reply.output
            assert len(output["pids"]) <= 3, output["pids"]  # its own namespace: itself (and a helper)
            assert not any(secret in env for env in output["environ"].values())
        assert bystander.poll() is None, "a host process was killed"
    finally:
        bystander.kill()
        bystander.wait()
    assert_good_still_runs(run, plugins)


def test_plugin_dir_and_sdk_are_read_only(run: Run, plugins: dict[str, Path]) -> None:
    result = run(plugins["hostile"], "hostile:Tamper")
    assert result.status is RunStatus.OK, result.error
    output = result.reply.output
    assert output["VERSION"] == "original"
    for key in ("own_module", "new_file", "sdk"):
        assert refused(output[key]), f"{key} was writable: {output[key]}"
    again = run(plugins["hostile"], "hostile:Tamper")
    assert again.reply is not None and again.reply.output["VERSION"] == "original"
    assert not (plugins["hostile"] / "planted.py").exists()
    assert_good_still_runs(run, plugins)


def test_no_privileges(run: Run, plugins: dict[str, Path]) -> None:
    secret = plugins["hostile"] / "root-only.txt"
    secret.write_text("root only")
    os.chmod(secret, 0o600)
    result = run(plugins["hostile"], "hostile:Privileges", {"secret": "root-only.txt"})
    assert result.status is RunStatus.OK, result.error
    output = result.reply.output
    assert output["uid"] != 0
    for key in ("setuid0", "ptrace_parent", "raise_nofile", "unshare_user", "secret"):
        assert refused(output[key]), f"{key} succeeded: {output[key]}"
    assert_good_still_runs(run, plugins)


def test_thread_bomb_is_stopped(run: Run, plugins: dict[str, Path], needs_cgroups: None) -> None:
    result = run(plugins["hostile"], "hostile:ThreadBomb", limits=Limits(wall_seconds=20, max_processes=32))
    assert result.status in (RunStatus.CRASHED, RunStatus.FAILED), (result.status, result.error)
    assert_good_still_runs(run, plugins)


def test_fork_bomb_is_stopped_quickly(run: Run, plugins: dict[str, Path], needs_cgroups: None) -> None:
    started = time.monotonic()
    result = run(plugins["hostile"], "hostile:ForkBomb", limits=Limits(wall_seconds=30, max_processes=32))
    elapsed_s = time.monotonic() - started
    assert result.status is RunStatus.CRASHED, (result.status, result.error)
    assert "process limit" in (result.error or "")
    assert elapsed_s < 5.0, f"fork bomb ran {elapsed_s:.2f} s"
    assert_good_still_runs(run, plugins)


def test_daemon_does_not_outlive_the_run(run: Run, plugins: dict[str, Path]) -> None:
    marker = f"{int(time.time()) % 1000 + 1000}.{uuid.uuid4().int % 10**6}"
    result = run(plugins["hostile"], "hostile:Daemon", {"marker": marker})
    assert result.status is RunStatus.OK, result.error
    deadline = time.monotonic() + 2
    leftovers: list[psutil.Process] = []
    while time.monotonic() < deadline:
        leftovers = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
        if not leftovers:
            break
        time.sleep(0.05)
    assert not leftovers, f"daemon survived: {leftovers}"
    assert_good_still_runs(run, plugins)


def test_scratch_disk_is_bounded(run: Run, plugins: dict[str, Path]) -> None:
    result = run(plugins["hostile"], "hostile:FillScratch", limits=Limits(wall_seconds=20, scratch_mb=8, memory_mb=256))
    assert result.status is RunStatus.OK, (result.status, result.error)
    output = result.reply.output
    assert output["error"] is not None and output["written_mb"] <= 8, output
    assert output["cwd"] == "/tmp"
    assert_good_still_runs(run, plugins)


def test_nothing_of_one_run_is_visible_to_the_next(run: Run, plugins: dict[str, Path]) -> None:
    first = run(plugins["hostile"], "hostile:Remember")
    second = run(plugins["hostile"], "hostile:Remember")
    assert first.status is RunStatus.OK and second.status is RunStatus.OK, (first.error, second.error)
    assert second.reply.output == {"file": False, "env": None, "module": None}


def test_no_ipc_object_outlives_its_run(run: Run, plugins: dict[str, Path]) -> None:
    """SysV shared memory, semaphores and message queues and POSIX message queues live in the IPC
    namespace, which a tenant's fork-server runs share with its zygote: a 1 MiB segment one run left
    was read by the next, and such segments held host memory beyond every run's limit. The sandbox
    refuses those calls; /dev/shm is not writable and /tmp is the run's own."""
    config = {"key": 0x52480000 + os.getpid() % 4096, "mb": 1}
    first = run(plugins["hostile"], "hostile:LeaveIpc", config)
    second = run(plugins["hostile"], "hostile:LeaveIpc", config)
    assert first.status is RunStatus.OK and second.status is RunStatus.OK, (first.error, second.error)
    for result in (first, second):
        for name, observation in result.reply.output.items():
            if name != "tmp_left":
                assert refused(observation), f"{name}: {observation}"
    assert second.reply.output["tmp_left"]["ok"]  # the run's own scratch is writable, and its own
    assert_good_still_runs(run, plugins)


def _cpu_seconds_of_uid(uid: int) -> float:
    total = 0.0
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.uids().real == uid:
                times = process.cpu_times()
                total += times.user + times.system
    return total


@pytest.mark.usefixtures("needs_cgroups")
def test_plugin_code_never_runs_outside_a_run(world_dir: Path) -> None:
    """A child armed for a plugin imports it before its request; a plugin that starts a spinning
    thread at import (and holds 32 MiB) kept running between runs with no rlimits and no accounting.
    Now such a child takes its run's rlimits and cgroup before the import and is frozen once it
    waits, until the run that claims it thaws it: idle, the tenant uses no CPU."""
    hostile = copy_plugin("hostile", world_dir / "hostile")
    good = copy_plugin("good", world_dir / "good")
    limits = Limits(wall_seconds=20, memory_mb=200, cpu_seconds=5)
    with ForkServerBackend(prefork=1) as backend:
        run = make_runner(backend)
        first = run(hostile, "busy_at_import:BusyAtImport", limits=limits)  # imported in the run
        assert first.status is RunStatus.OK, (first.error, first.logs)
        assert first.reply.output["by_a_waiting_child"] is False
        server = backend._groups.current("tenant-a")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            c.preload is not None and state is ChildState.READY for c, state in server.children.states()
        ):
            time.sleep(0.02)
        uid = backend.uids.uid_for("tenant-a")
        before = _cpu_seconds_of_uid(uid)
        time.sleep(2)
        idle = _cpu_seconds_of_uid(uid) - before
        assert idle < 0.3, f"the tenant's processes used {idle:.2f} CPU-s between runs"
        second = run(hostile, "busy_at_import:BusyAtImport", limits=limits)
        assert second.status is RunStatus.OK, (second.error, second.logs)
        seen = second.reply.output
        assert seen["by_a_waiting_child"] is True  # the premise: imported while it waited
        assert seen["rlimit_as"] == 200 << 20 and seen["rlimit_cpu"] == 5  # the run's, at the import
        assert second.usage.peak_rss_kb >= 32 * 1024  # what the import holds counts as the run's
        assert_good_still_runs(make_runner(backend), {"good": good})
        other = make_runner(backend)(good, "good:Good", group="tenant-b")
        assert other.status is RunStatus.OK, other.error


def test_no_host_descriptor_is_left_open(run: Run, plugins: dict[str, Path]) -> None:
    """No control channel, cgroup file or other run's pipe: only the run's own stdio pipes."""
    result = run(plugins["hostile"], "hostile:OpenFds")
    assert result.status is RunStatus.OK, result.error
    targets = [obs["value"] for obs in result.reply.output.values() if obs["ok"]]
    assert targets, result.reply.output
    for target in targets:
        assert target.startswith(("pipe:", "/dev/null", "/proc/")), f"unexpected open descriptor: {target}"


def _host_peak_bytes(call: Callable[[], RunResult]) -> tuple[RunResult, int]:
    """``call()`` and the peak of the host's Python allocations while it ran (the guest's are elsewhere)."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reply_of_empty_maps_is_refused_before_it_is_decoded(
    run: Run, plugins: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 MiB of ``0x80`` (empty maps) used to become ~4 million dicts in the host (~300 MiB); and it is
    scanned once, not again when the run is classified."""
    count = 4 << 20
    limits = Limits(wall_seconds=30, max_output_kb=4 * 1024 + 64)
    scans: list[int] = []
    real_scan = decoded_module.msgpack_cost

    def counted(data: bytes, budget: int) -> int:
        scans.append(len(data))
        return real_scan(data, budget)

    monkeypatch.setattr(decoded_module, "msgpack_cost", counted)
    result, peak = _host_peak_bytes(
        lambda: run(plugins["hostile"], "hostile:EmptyMaps", {"count": count}, limits=limits)
    )
    assert result.status is RunStatus.OUTPUT_LIMIT, (result.status, result.error)
    assert "host memory once decoded" in (result.error or ""), result.error
    assert result.reply is None
    assert len(scans) == 1, scans
    assert peak < 3 * count, f"host peak {peak / 2**20:.0f} MiB for a {count >> 20} MiB reply"
    assert_good_still_runs(run, plugins)


def test_a_mebibyte_of_newlines_is_a_few_records(run: Run, plugins: dict[str, Path]) -> None:
    """1 MB of ``a\\n`` on stderr used to become 500,000 records (~100 MiB in the host)."""
    lines = 500_000
    limits = Limits(wall_seconds=30, max_log_kb=1024)
    result, peak = _host_peak_bytes(
        lambda: run(plugins["hostile"], "hostile:Newlines", {"lines": lines}, limits=limits)
    )
    assert result.status is RunStatus.OK, (result.status, result.error)
    plain = [record for record in result.logs if record.logger == "stderr"]
    assert len(result.logs) <= 3 and len(plain) == 1, [r.message[:40] for r in result.logs]
    assert plain[0].message.count("a\n") == lines - 1 and plain[0].source == "guest"
    assert peak < 8 * 2 * lines, f"host peak {peak / 2**20:.0f} MiB for {2 * lines} bytes of logs"
    assert_good_still_runs(run, plugins)


def test_a_guest_cannot_forge_host_records_or_host_measured_statuses(run: Run, plugins: dict[str, Path]) -> None:
    result = run(plugins["hostile"], "hostile:ForgesHostRecords")
    assert result.status is RunStatus.FAILED, (result.status, result.error)  # not memory_limit: nothing measured
    assert result.reply is not None and result.reply.error_type == "MemoryError"
    forged = [record for record in result.logs if record.message == "log output truncated at max_log_kb"]
    assert [record.logger for record in forged] == ["rh.sandbox", "rh.egress"]
    assert all(record.source == "guest" for record in result.logs), result.logs
    assert_good_still_runs(run, plugins)


_SOURCE = """from rh_sdk import ResultHandler

class Which(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"ran": %r}
"""


def test_a_shipped_pyc_never_runs_in_place_of_its_source(run: Run, world_dir: Path) -> None:
    """A pyc with an unchecked hash (PEP 552) beside a source over the host's 1 MiB precompile cap:
    Python's default would run the pyc without reading the source."""
    plugin = world_dir / "pyc-swap"
    (plugin / "__pycache__").mkdir(parents=True)
    impostor = world_dir / "impostor.py"
    impostor.write_text(_SOURCE % "pyc")
    pyc = plugin / "__pycache__" / f"which.{sys.implementation.cache_tag}.pyc"
    py_compile.compile(str(impostor), cfile=str(pyc), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    padding = "# " + "x" * 1022 + "\n"
    (plugin / "which.py").write_text(_SOURCE % "source" + padding * 1100)  # > 1 MiB: not precompiled
    for path in [plugin, *plugin.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    result = run(plugin, "which:Which")
    assert result.status is RunStatus.OK, (result.error, result.logs[-3:])
    assert result.reply is not None and result.reply.output == {"ran": "source"}
