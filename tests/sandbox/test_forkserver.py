"""The warm fork server: code changes, new plugin dirs, groups, restarts, and status parity."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from rh_sandbox.forkserver import ForkServerBackend
from rh_sandbox.strict import StrictProcessBackend
from rh_sandbox.types import Limits, RunStatus, SandboxError
from tests.sandbox.conftest import copy_plugin, make_runner

pytestmark = pytest.mark.usefixtures("needs_strict")

GOOD_V2 = """
from rh_sdk import ResultHandler


class Good(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"count": len(results), "version": "v2"}
"""


@pytest.fixture(scope="module")
def warm() -> Iterator[ForkServerBackend]:
    with ForkServerBackend(prefork=1) as backend:
        yield backend


def test_code_change_in_place_takes_effect_next_run(warm: ForkServerBackend, world_dir: Path) -> None:
    plugin = copy_plugin("good", world_dir / "good")
    run = make_runner(warm)
    assert run(plugin, "good:Good").reply.output["version"] == "original"
    (plugin / "good.py").write_text(GOOD_V2)
    assert run(plugin, "good:Good").reply.output["version"] == "v2"


def test_new_and_replaced_plugin_dirs_are_seen(warm: ForkServerBackend, world_dir: Path) -> None:
    run = make_runner(warm)
    first = copy_plugin("good", world_dir / "v1")
    assert run(first, "good:Good", group="dirs").status is RunStatus.OK
    second = copy_plugin("good", world_dir / "v2")  # a new version in a new dir, after the zygote started
    (second / "good.py").write_text(GOOD_V2)
    assert run(second, "good:Good", group="dirs").reply.output["version"] == "v2"
    shutil.rmtree(first)  # replaced: same path, new inode, new code
    copy_plugin("good", first)
    (first / "good.py").write_text(GOOD_V2.replace("v2", "v1-replaced"))
    assert run(first, "good:Good", group="dirs").reply.output["version"] == "v1-replaced"
    assert run(second, "good:Good", group="dirs").reply.output["version"] == "v2"


def test_groups_never_share_a_zygote(world_dir: Path) -> None:
    plugin = copy_plugin("good", world_dir / "good")
    with ForkServerBackend(prefork=0) as backend:
        run = make_runner(backend)
        assert run(plugin, "good:Good", group="tenant-a").status is RunStatus.OK
        assert run(plugin, "good:Good", group="tenant-b").status is RunStatus.OK
        assert backend.zygote_count() == 2
    assert backend.zygote_count() == 0


def test_dead_zygote_is_restarted(world_dir: Path) -> None:
    plugin = copy_plugin("good", world_dir / "good")
    with ForkServerBackend(prefork=1) as backend:
        run = make_runner(backend)
        assert run(plugin, "good:Good").status is RunStatus.OK
        zygote = backend._groups["tenant-a"].zygote
        bwrap_init = psutil.Process(zygote._proc.pid).children()[0]
        bwrap_init.children()[0].kill()  # the zygote itself; its sandbox then ends
        zygote._proc.wait(timeout=5)
        result = run(plugin, "good:Good")
        assert result.status is RunStatus.OK, (result.error, result.logs)
        assert backend._groups["tenant-a"].zygote is not zygote


CASES = [
    ("limits:Raises", Limits(wall_seconds=20), RunStatus.FAILED),
    ("limits:Skips", Limits(wall_seconds=20), RunStatus.SKIPPED),
    ("limits:Hog", Limits(wall_seconds=20, memory_mb=128), RunStatus.MEMORY_LIMIT),
    ("limits:Sleeps", Limits(wall_seconds=1), RunStatus.TIMEOUT),
    ("limits:Spins", Limits(wall_seconds=20, cpu_seconds=1), RunStatus.CPU_LIMIT),
    ("limits:Floods", Limits(wall_seconds=20, max_output_kb=64), RunStatus.OUTPUT_LIMIT),
    ("limits:Exits", Limits(wall_seconds=20), RunStatus.FAILED),
]


@pytest.mark.parametrize(("entry", "limits", "expected"), CASES, ids=[c[0] for c in CASES])
def test_statuses_match_the_cold_strict_path(
    warm: ForkServerBackend, world_dir: Path, entry: str, limits: Limits, expected: RunStatus
) -> None:
    plugin = copy_plugin("limits", world_dir / "limits")
    warm_result = make_runner(warm)(plugin, entry, limits=limits)
    cold_result = make_runner(StrictProcessBackend())(plugin, entry, limits=limits)
    assert warm_result.status is expected, (warm_result.error, warm_result.logs[-3:])
    assert cold_result.status is expected, (cold_result.error, cold_result.logs[-3:])
    if expected in (RunStatus.FAILED, RunStatus.SKIPPED):  # ended by itself, not killed by the host
        assert warm_result.exit_code == cold_result.exit_code


@pytest.mark.usefixtures("needs_cgroups")
def test_armed_cgroups_take_each_runs_limits(warm: ForkServerBackend, world_dir: Path) -> None:
    plugin = copy_plugin("limits", world_dir / "limits")
    good = copy_plugin("good", world_dir / "good")
    run = make_runner(warm)
    for memory_mb in (512, 96, 384):  # raise and lower the limit of armed, pre-joined cgroups
        assert run(good, "good:Good", limits=Limits(wall_seconds=20, memory_mb=memory_mb)).status is RunStatus.OK
    hog = run(plugin, "limits:Hog", limits=Limits(wall_seconds=20, memory_mb=96))
    assert hog.status is RunStatus.MEMORY_LIMIT, hog.error
    assert hog.usage.peak_rss_kb <= 200 * 1024


@pytest.mark.parametrize("warm_backend", [True, False], ids=["forkserver", "cold"])
def test_plugin_dir_the_sandbox_cannot_read_is_a_host_error(world_dir: Path, warm_backend: bool) -> None:
    hidden = world_dir / "private"
    hidden.mkdir(mode=0o700)
    plugin = copy_plugin("good", hidden / "good")
    backend = ForkServerBackend(prefork=0) if warm_backend else StrictProcessBackend()
    try:
        with pytest.raises(SandboxError, match="readable by the sandbox uid"):
            make_runner(backend)(plugin, "good:Good")
    finally:
        backend.close()


def test_zygote_outlives_the_thread_that_started_it(world_dir: Path) -> None:
    """bwrap --die-with-parent follows the forking *thread*: a pipeline worker thread that ends
    must not take its tenant's zygote (and the runs inside) with it."""
    plugin = copy_plugin("good", world_dir / "good")
    with ForkServerBackend(prefork=1) as backend:
        run = make_runner(backend)
        first: list = []
        worker = threading.Thread(target=lambda: first.append(run(plugin, "good:Good")))
        worker.start()
        worker.join()
        assert first[0].status is RunStatus.OK
        zygote = backend._groups["tenant-a"].zygote
        time.sleep(0.3)  # PR_SET_PDEATHSIG would have fired by now
        assert zygote.alive()
        assert run(plugin, "good:Good").status is RunStatus.OK
        assert backend._groups["tenant-a"].zygote is zygote
