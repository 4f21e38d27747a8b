"""`rh-host run` with WASM and Python handlers side by side: priorities interleave, one outcome shape."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
RH_HOST = str(Path(sys.executable).with_name("rh-host"))
SAMPLES = REPO / "sample_plugins"
WASM = SAMPLES / "wasm"


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rh_wasm_sample_build_cli", WASM / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def c_stats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C sample, built, copied under a new name and priority so it interleaves with Python ones."""
    build = _build_module()
    try:
        build.build("c")
    except build.ToolchainMissing as exc:
        pytest.skip(f"C wasm toolchain missing: {exc}")
    target = tmp_path_factory.mktemp("plugins") / "c_stats_15"
    shutil.copytree(WASM / "c_stats", target, ignore=shutil.ignore_patterns("build"))
    manifest = (target / "plugin.toml").read_text()
    lines = [line for line in manifest.splitlines() if not line.startswith(("name", "priority"))]
    (target / "plugin.toml").write_text('name = "c_stats_15"\npriority = 15\n' + "\n".join(lines) + "\n")
    target.chmod(0o755)
    target.parent.chmod(0o755)
    return target


def test_wasm_and_python_handlers_merge_in_priority_order(c_stats: Path) -> None:
    proc = subprocess.run(
        [
            RH_HOST,
            "run",
            str(SAMPLES / "batches" / "openai_sample.jsonl"),
            "--json",
            "-q",
            "--plugin",
            str(SAMPLES / "python" / "error_collector"),  # priority 20
            "--plugin",
            str(c_stats),  # priority 15, wasm
            "--plugin",
            str(SAMPLES / "python" / "stats_summary"),  # priority 10
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert [(h["name"], h["runtime"], h["status"]) for h in outcome["handlers"]] == [
        ("stats_summary", "python", "ok"),
        ("c_stats_15", "wasm", "ok"),
        ("error_collector", "python", "ok"),
    ]
    # both runtimes at the level --isolation auto chose (strict where the machine has it)
    assert len({h["isolation"].split("+")[0] for h in outcome["handlers"]}) == 1
    python_stats, wasm_stats = outcome["handlers"][0]["output"], outcome["handlers"][1]["output"]
    assert wasm_stats == python_stats == {"total": 8, "succeeded": 6, "failed": 2, "error_rate": 0.25}
    # every key of the wasm twin is also set by stats_summary (priority 10), which wins
    conflicts = {c["key"]: (c["winner"], c["overridden"]) for c in outcome["conflicts"]}
    assert conflicts["total"] == ("stats_summary", ["c_stats_15"])
    assert conflicts["error_rate"] == ("stats_summary", ["c_stats_15", "error_collector"])
    assert outcome["output"]["error_count"] == 2
    assert outcome["success"] is True
