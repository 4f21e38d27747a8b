"""``rh-host plugin check DIR``: the check an upload gets, run locally: exit 0 when the handler loads,
1 with the guest's one-line error when it does not, 2 for a directory that is not a plugin."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from rh_testserver import RH_HOST, SAMPLE_PLUGINS, public_tempdir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def work() -> Iterator[Path]:
    path = public_tempdir("rh-plugin-check-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def check(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RH_HOST, "plugin", "check", *map(str, args)], capture_output=True, text=True, timeout=120)


WASM = REPO / "sample_plugins" / "wasm"


def built_c_stats() -> Path:
    """The C sample, compiled by sample_plugins/wasm/build.py (a fresh clone has no handler.wasm)."""
    spec = importlib.util.spec_from_file_location("rh_wasm_sample_build_check", WASM / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.build("c")
    return WASM / "c_stats"


@pytest.mark.parametrize("runtime", ["python", "wasm"])
def test_a_plugin_that_loads(runtime: str) -> None:
    plugin = SAMPLE_PLUGINS[0] if runtime == "python" else built_c_stats()
    proc = check(plugin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{plugin.name} 1.0.0: loads"), proc.stdout


def test_a_syntax_error_names_its_file_and_line(work: Path) -> None:
    plugin = work / "broken"
    shutil.copytree(SAMPLE_PLUGINS[0], plugin)
    handler = plugin / "handler.py"
    lines = handler.read_text().splitlines()
    handler.write_text("\n".join([*lines, "def (:"]) + "\n")
    proc = check(plugin)
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "SyntaxError" in proc.stderr and f"handler.py, line {len(lines) + 1}" in proc.stderr, proc.stderr


def test_config_that_init_refuses(work: Path) -> None:
    proc = check(SAMPLE_PLUGINS[1], "--config", '{"max_error_rate": 5}')
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "ErrorCollectorHandler.__init__ raised ValueError: max_error_rate" in proc.stderr, proc.stderr


def test_not_a_plugin_directory(work: Path) -> None:
    proc = check(work)
    assert proc.returncode == 2 and "plugin.toml" in proc.stderr, proc.stderr
