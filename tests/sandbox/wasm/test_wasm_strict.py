"""WASM workers at the strict level: the wall behind wasmtime, for the day a guest gets out of it.

The ABI suite runs at both levels (the ``backend`` fixture); these tests look at what only the strict
level promises: each tenant's workers as its own uid, in namespaces, confined, with a compiled-module
cache of their own; and code running as the worker (a guest that escaped wasmtime) meeting the walls.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import wasm_guests as g
from wasm_helpers import write_plugin

from rh_sandbox.factory import make_wasm_backend
from rh_sandbox.linux.cgroups import CgroupV1, group_dir_name
from rh_sandbox.linux.uids import SandboxUids, processes_of_uid
from rh_sandbox.probe import Probe
from rh_sandbox.types import IsolationLevel, Limits, RunSpec, RunStatus, SandboxError
from rh_sandbox.wasm import StrictWorkers, WasmBackend, WasmModuleError
from rh_sandbox.wasm._pool import WorkerProcess

pytestmark = pytest.mark.usefixtures("needs_strict")

OK = g.replying({"ran": True, "ok": True})


@pytest.fixture
def cache_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rh-wasm-cache-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def uids() -> SandboxUids:
    return SandboxUids()


def _spec(plugin_dir: Path, group: str, **limits: float) -> RunSpec:
    return RunSpec(
        name="w", runtime="wasm", plugin_dir=str(plugin_dir), entry="handler.wat", encoding="json", group=group,
        limits=Limits(**limits),  # type: ignore[arg-type]
    )  # fmt: skip


def _worker_pid(worker: WorkerProcess) -> int:
    """The worker process itself (``worker.pid`` is bwrap's, its parent)."""
    pid = worker._guest_pid
    assert pid is not None and pid != worker.pid
    assert Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split() == [str(pid)]
    return pid


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_each_tenants_worker_runs_as_its_own_uid_in_its_own_namespaces(
    tmp_path: Path, cache_root: Path, uids: SandboxUids, machine: Probe
) -> None:
    write_plugin(tmp_path, OK)
    cgroup_dirs: list[Path] = []
    tenant_dir = Path(f"/sys/fs/cgroup/cpu/rh-host/{group_dir_name('tenant-a')}")
    pinned_before = _entries_of_this_process(tenant_dir)  # other backends of this test process may pin it too
    with WasmBackend(sandbox=StrictWorkers(uids=uids, cache_dir=cache_root)) as backend:
        for group in ("tenant-a", "tenant-b"):
            result = backend.run(_spec(tmp_path, group), b"{}")
            assert result.status is RunStatus.OK, result.error
            cgroup = "+cgroup" if machine.per_run_cgroups else ""
            assert result.isolation.startswith(f"strict{cgroup}+seccomp")
        workers = {w.group: _worker_pid(w) for w in backend._pool.workers()}
        assert set(workers) == {"tenant-a", "tenant-b"}
        for group, pid in workers.items():
            status = _status(pid)
            uid = uids.uid_for(group)
            assert status["Uid"].split() == [str(uid)] * 4
            assert status["Gid"].split() == [str(uid)] * 4
            assert status["Groups"] == ""
            assert status["CapEff"] == status["CapBnd"] == "0000000000000000"
            assert status["NoNewPrivs"] == "1"
            assert status["Seccomp"] == ("2" if machine.seccomp else "0")
            for ns in ("net", "pid", "mnt", "ipc"):
                assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
            seen = set(os.listdir(f"/proc/{pid}/root"))
            assert {"usr", "rh", "tmp", "cache"} <= seen
            assert not seen & {"root", "home", "var", "srv", "mnt", "media", "opt", "boot"}
            assert not os.path.exists(f"/proc/{pid}/root/etc/passwd")
            if machine.per_run_cgroups:  # a cgroup of its own, joined before it read a byte from the host
                joined = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
                pids_dir = Path("/sys/fs/cgroup/pids") / joined["pids"].lstrip("/")
                run_name = joined["freezer"].rpartition("/")[2]
                assert joined["freezer"] == f"/rh-host/{run_name}"
                assert joined["pids"] == f"/rh-host/{group_dir_name(group)}/{run_name}"  # the tenant's task total
                if "cpu" in CgroupV1().controllers:  # no quota: there to count against its tenant's weight
                    assert joined["cpu"] == f"/rh-host/{group_dir_name(group)}/{run_name}"
                assert 4 <= int(pids_dir.joinpath("pids.max").read_text()) <= 16 + 2 * (os.cpu_count() or 1)
                assert pids_dir.joinpath("cgroup.procs").read_text().split() == [str(pid)]
                memory = Path("/sys/fs/cgroup/memory") / joined["memory"].lstrip("/") / "memory.limit_in_bytes"
                assert 4096 << 20 < int(memory.read_text()) < 5 << 30  # its data limit, scratch and code
                cgroup_dirs.append(pids_dir)
        assert uids.uid_for("tenant-a") != uids.uid_for("tenant-b")
    assert cgroup_dirs or not machine.per_run_cgroups
    assert not [d for d in cgroup_dirs if d.exists()]  # removed with their workers
    assert _entries_of_this_process(tenant_dir) <= pinned_before  # its pin is gone: the dir goes with its last user


def _entries_of_this_process(tenant_dir: Path) -> set[str]:
    """The run cgroups and pins this process made in a tenant's dir (another process's keep it alive)."""
    if not tenant_dir.exists():
        return set()
    return {p.name for p in tenant_dir.iterdir() if p.is_dir() and p.name.startswith(f"{os.getpid()}.")}


# Runs as the worker would, confined as it confines itself, then tries what a guest that escaped
# wasmtime would try; prints what happened as JSON.
_HOSTILE = """
import errno, json, os, socket, sys
sys.path.insert(0, "/rh/site")
from rh_sandbox.wasm._worker import confine_self, limit_self
confine_self(json.loads(sys.argv[sys.argv.index("--confine") + 1]))
limit_self(256)
seen = {"uid": os.getuid(), "gid": os.getgid()}
def attempt(name, action):
    try:
        action()
        seen[name] = "ok"
    except OSError as exc:
        seen[name] = errno.errorcode.get(exc.errno, str(exc.errno))
def tcp():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(("127.0.0.1", PORT))
def unix():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(UNIX_PATH)
def write(path):
    with open(path, "w") as f:
        f.write("x")
attempt("tcp", tcp)
attempt("unix", unix)
attempt("passwd", lambda: open("/etc/passwd").read())
attempt("other_cache", lambda: os.listdir(OTHER_CACHE))
attempt("write_runtime", lambda: write("/rh/site/planted.py"))
attempt("write_own_cache", lambda: write("/cache/planted"))
attempt("make_dev_node", lambda: write("/dev/planted"))
seen["pids"] = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
def fork_bomb():
    children = []
    try:
        while len(children) < 200:
            pid = os.fork()
            if pid == 0:
                os.pause()
            children.append(pid)
    finally:
        seen["forked"] = len(children)
attempt("fork_bomb", fork_bomb)
print(json.dumps(seen))
"""


def test_code_running_as_the_worker_meets_the_walls(
    tmp_path: Path, cache_root: Path, uids: SandboxUids, machine: Probe
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    unix_dir = Path(tempfile.mkdtemp(prefix="rh-test-", dir="/tmp"))
    os.chmod(unix_dir, 0o755)
    unix_path = str(unix_dir / "host.sock")
    host_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host_socket.bind(unix_path)
    os.chmod(unix_path, 0o777)
    host_socket.listen()
    try:
        workers = StrictWorkers(uids=uids, cache_dir=cache_root)
        other = workers._group_cache("tenant-b", uids.uid_for("tenant-b"))
        launch = workers.launch("tenant-a", None)
        argv = launch.argv
        program = (
            _HOSTILE.replace("PORT", str(listener.getsockname()[1]))
            .replace("UNIX_PATH", repr(unix_path))
            .replace("OTHER_CACHE", repr(str(other)))
        )
        argv[argv.index("-c") + 1] = program
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=60, check=False, cwd="/", pass_fds=launch.pass_fds)
            max_tasks = int((launch.cgroup.paths["pids"] / "pids.max").read_text()) if launch.cgroup else None
        finally:
            launch.discard()
        assert proc.returncode == 0, proc.stderr.decode()
        seen = json.loads(proc.stdout)
        with pytest.raises(TimeoutError):
            listener.accept()
        host_socket.settimeout(0.2)
        with pytest.raises(TimeoutError):
            host_socket.accept()
    finally:
        listener.close()
        host_socket.close()
        shutil.rmtree(unix_dir, ignore_errors=True)
    assert seen["uid"] == seen["gid"] == uids.uid_for("tenant-a")
    assert seen["tcp"] in ("EAFNOSUPPORT", "ECONNREFUSED", "ENETUNREACH")  # its own network namespace
    if machine.seccomp:
        assert seen["tcp"] == "EAFNOSUPPORT"  # no socket but AF_UNIX at all
    assert seen["unix"] == "ENOENT"  # not mounted
    assert seen["passwd"] == "ENOENT"
    assert seen["other_cache"] == "ENOENT"
    assert seen["write_runtime"] == "EROFS"
    assert seen["write_own_cache"] == "ok"
    if machine.landlock_abi:
        assert seen["make_dev_node"] == "EACCES"  # Landlock: /dev holds device files to use, not to make
    assert seen["pids"] == [1]  # its own PID namespace, of which it is the only process
    if machine.per_run_cgroups:  # its cgroup's pids.max: room for the worker's threads, not for a fork bomb
        assert max_tasks is not None and seen["fork_bomb"] == "EAGAIN" and seen["forked"] < max_tasks


def test_tenant_caches_are_apart_and_a_foreign_one_is_discarded(
    tmp_path: Path, cache_root: Path, uids: SandboxUids
) -> None:
    write_plugin(tmp_path, OK)
    with WasmBackend(sandbox=StrictWorkers(uids=uids, cache_dir=cache_root)) as backend:
        for group in ("tenant-a", "tenant-b"):
            assert backend.run(_spec(tmp_path, group), b"{}").status is RunStatus.OK
    dirs = {d.stat().st_uid: d for d in cache_root.iterdir()}
    uid_a, uid_b = uids.uid_for("tenant-a"), uids.uid_for("tenant-b")
    assert set(dirs) == {uid_a, uid_b}
    assert stat.S_IMODE(cache_root.stat().st_mode) == 0o711
    for directory in dirs.values():
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert len(list(directory.rglob("*.cwasm"))) == 1
    # tenant-a's dir, as if written by another uid (tenant-a's uid changed since): never loaded
    own = dirs[uid_a]
    planted = next(own.rglob("*.cwasm"))
    planted.write_bytes(b"native code another uid wrote")
    os.chown(own, uid_b, uid_b)
    with WasmBackend(sandbox=StrictWorkers(uids=uids, cache_dir=cache_root)) as backend:
        assert backend.run(_spec(tmp_path, "tenant-a"), b"{}").status is RunStatus.OK
    assert own.stat().st_uid == uid_a
    assert planted.read_bytes() != b"native code another uid wrote"  # recompiled into a fresh dir


def test_a_worker_killed_at_its_wall_limit_leaves_nothing_behind(
    tmp_path: Path, uids: SandboxUids, machine: Probe
) -> None:
    with WasmBackend(sandbox=StrictWorkers(uids=uids), workers=1) as backend:
        write_plugin(tmp_path, OK)
        assert backend.run(_spec(tmp_path, "tenant-a"), b"{}").status is RunStatus.OK
        cgroup = backend._pool.workers()[0]._cgroup
        assert (cgroup is not None) == machine.per_run_cgroups
        write_plugin(tmp_path, g.sleeping(60))
        result = backend.run(_spec(tmp_path, "tenant-a", wall_seconds=0.5), b"{}")
        assert result.status is RunStatus.TIMEOUT
        assert cgroup is None or not [p for p in cgroup.paths.values() if p.exists()]  # removed with the worker
        uid = uids.uid_for("tenant-a")
        deadline = time.monotonic() + 5
        while processes_of_uid(uid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert processes_of_uid(uid) == 0
        assert not [c for c in psutil.Process().children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
        write_plugin(tmp_path, OK)
        assert backend.run(_spec(tmp_path, "tenant-a"), b"{}").status is RunStatus.OK  # a new worker
    assert processes_of_uid(uid) == 0


def test_make_wasm_backend_follows_the_isolation_setting(machine: Probe, uids: SandboxUids) -> None:
    with make_wasm_backend("strict", probed=machine, uids=uids) as strict:
        assert isinstance(strict, WasmBackend) and strict.isolation is IsolationLevel.STRICT
    with make_wasm_backend("basic", uids=uids) as basic:
        assert isinstance(basic, WasmBackend) and basic.isolation is IsolationLevel.BASIC
    lacking = Probe(**{**machine.__dict__, "strict_sandbox_works": False, "strict_problem": "no bwrap"})
    with pytest.raises(SandboxError, match=r"strict.*no bwrap"):
        make_wasm_backend("strict", probed=lacking, uids=uids)
    with make_wasm_backend("auto", probed=lacking, uids=uids) as degraded:
        assert isinstance(degraded, WasmBackend) and degraded.isolation is IsolationLevel.BASIC


def test_a_cache_dir_the_sandbox_uids_cannot_reach_is_refused_up_front(uids: SandboxUids) -> None:
    hidden = Path(tempfile.mkdtemp(prefix="rh-hidden-", dir="/tmp"))  # mode 0700
    try:
        with pytest.raises(SandboxError) as refused:
            StrictWorkers(uids=uids, cache_dir=hidden / "cache")
        assert str(refused.value).startswith(f"wasm cache dir {hidden}/cache: ")
        assert f"({hidden} is not searchable by others)" in str(refused.value)
    finally:
        shutil.rmtree(hidden)


def _sandboxed_python_of(uid: int) -> int | None:
    """The one process of ``uid`` that is not bwrap (the worker), if it runs yet."""
    for pid in psutil.pids():
        try:
            status = _status(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if status["Uid"].split()[0] == str(uid) and status["Name"] != "bwrap":
            return pid
    return None


def test_an_upload_check_runs_as_its_tenants_uid_sandboxed_and_leaves_nothing(
    tmp_path: Path, cache_root: Path, uids: SandboxUids, machine: Probe
) -> None:
    path = write_plugin(tmp_path, g.sleeping_start(60))  # blocks in its start function: time to look
    uid = uids.uid_for("tenant-a")
    with WasmBackend(sandbox=StrictWorkers(uids=uids, cache_dir=cache_root)) as backend:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            checking = pool.submit(backend.validate, path, group="tenant-a", name="handler.wat", timeout_seconds=8)
            deadline = time.monotonic() + 8
            while (pid := _sandboxed_python_of(uid)) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pid is not None, "no process of the tenant's uid while its upload was checked"
            status = _status(pid)  # the worker confines itself just after it starts: give it a moment
            while status["Seccomp"] != ("2" if machine.seccomp else "0") and time.monotonic() < deadline:
                time.sleep(0.02)
                status = _status(pid)
            seen = set(os.listdir(f"/proc/{pid}/root"))
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            namespaces = {ns: os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("net", "pid", "mnt")}
            with pytest.raises(WasmModuleError, match=r"^handler.wat: checking the module took longer than 8 s"):
                checking.result(timeout=30)
        assert status["Uid"].split() == [str(uid)] * 4
        assert status["CapEff"] == "0000000000000000" and status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == ("2" if machine.seccomp else "0")
        assert b"--validate" in cmdline and b"--cache-dir" not in cmdline
        for ns, link in namespaces.items():
            assert link != os.readlink(f"/proc/self/ns/{ns}")
        assert {"usr", "rh", "tmp"} <= seen
        assert "cache" not in seen  # a check compiles one module and keeps nothing
        assert not list(cache_root.iterdir())  # not even the tenant's cache dir was made for it
        deadline = time.monotonic() + 5
        while processes_of_uid(uid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert processes_of_uid(uid) == 0
        assert not [c for c in psutil.Process().children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
