"""Fixtures for the process sandbox tests: real backends, plugin dirs any uid can read."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rh_sandbox.probe import Probe, probe
from rh_sandbox.types import Limits, RunResult, RunSpec
from rh_sdk.protocol import Invocation, encode_invocation

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(scope="session")
def machine() -> Probe:
    return probe()


@pytest.fixture(scope="session")
def needs_strict(machine: Probe) -> None:
    if not machine.strict_sandbox_works:
        pytest.skip(f"strict sandbox unavailable here: {machine.strict_problem}")


@pytest.fixture(scope="session")
def needs_cgroups(machine: Probe) -> None:
    if not machine.per_run_cgroups:
        pytest.skip("no per-run cgroups here (cgroup v1 pids+freezer, or a writable v2 memory+pids subtree)")


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory under /tmp that every uid can traverse: only the sandbox may hide it."""
    path = Path(tempfile.mkdtemp(prefix="rh-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def copy_plugin(name: str, target: Path, *, mode: int = 0o755) -> Path:
    """Copy a fixture plugin to ``target``; world-readable (and, with mode 0o777, world-writable)."""
    shutil.copytree(PLUGINS / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [target, *target.rglob("*")]:
        os.chmod(path, mode if path.is_dir() else (mode & ~0o111) | stat.S_IRUSR)
    return target


Run = Callable[..., RunResult]


def make_runner(backend: object) -> Run:
    def run(
        plugin_dir: Path,
        entry: str,
        config: dict | None = None,
        *,
        limits: Limits | None = None,
        group: str = "tenant-a",
    ) -> RunResult:
        payload = encode_invocation(
            Invocation(batch_id="b1", handler=entry, config=config or {}, results=[{"custom_id": "r1"}])
        )
        spec = RunSpec(
            name=entry, runtime="python", plugin_dir=str(plugin_dir), entry=entry, group=group,
            limits=limits or Limits(wall_seconds=20),
        )  # fmt: skip
        return backend.run(spec, payload)  # type: ignore[attr-defined]

    return run
