"""Integration fixtures: sample plugins copied (and their dependencies vendored from the index) into a
temp dir, the strict sandbox with network grants enforced by the host, and real servers on loopback."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from rh_host.manifest import load_plugin
from rh_host.outcome import HandlerRun
from rh_host.pipeline import Pipeline
from rh_host.vendoring import vendor_plugin
from rh_sandbox import EgressSettings, OperatorPolicy, make_python_backend, probe
from rh_sdk.protocol import ResultLine
from tests.integrations.helpers import RunPlugin, grants_for

SAMPLES = Path(__file__).resolve().parents[2] / "sample_plugins" / "python"


@pytest.fixture(scope="session")
def plugin_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="rh-integ-plugins-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def plugin_copy(plugin_root: Path) -> Callable[[str], Path]:
    """A temp copy of a sample plugin with its requirements vendored (pip, wheels only), once per session."""
    done: dict[str, Path] = {}

    def copy(name: str) -> Path:
        if name not in done:
            target = plugin_root / name
            shutil.copytree(SAMPLES / name, target, ignore=shutil.ignore_patterns("__pycache__", "vendor"))
            vendor_plugin(target)
            for path in [target, *target.rglob("*")]:
                if not path.is_symlink():
                    os.chmod(path, 0o755 if path.is_dir() else stat.S_IMODE(path.stat().st_mode) | 0o444)
            done[name] = target
        return done[name]

    return copy


# What the operator of these tests allows: any port of the loopback servers the tests start.
TEST_POLICY = OperatorPolicy(allowed=("127.0.0.1:*", "localhost:*"), internal_allowed=("127.0.0.1:*",))


@pytest.fixture(scope="session")
def pipeline() -> Iterator[Pipeline]:
    """The production backend at the strict level: runs with grants get their own egress broker."""
    probed = probe()
    if not probed.strict_sandbox_works:
        pytest.skip(f"network grants are enforced at the strict level, unavailable here: {probed.strict_problem}")
    backend = make_python_backend("strict", probed=probed, egress=EgressSettings(policy=TEST_POLICY))
    yield Pipeline(backend, max_parallel=1)
    backend.close()


@pytest.fixture(scope="session")
def run_plugin(pipeline: Pipeline, plugin_copy: Callable[[str], Path]) -> RunPlugin:
    """Run one sample plugin through the strict sandbox over ``results``, granted ``grants`` (by default
    the host:port of the servers its config names, as a tenant would write in plugin.toml)."""

    def run(
        name: str,
        config: dict[str, Any],
        results: list[dict[str, Any]],
        batch_id: str = "batch_1",
        *,
        grants: list[str] | None = None,
    ) -> HandlerRun:
        plugin = load_plugin(plugin_copy(name), config)
        allowed = grants_for(config) if grants is None else grants
        plugin = msgspec.structs.replace(
            plugin, manifest=msgspec.structs.replace(plugin.manifest, allowed_hosts=allowed)
        )
        lines = msgspec.convert(results, list[ResultLine])
        outcome = pipeline.run(batch_id, lines, {"project": "integ"}, [plugin])
        assert len(outcome.handlers) == 1
        return outcome.handlers[0]

    return run
