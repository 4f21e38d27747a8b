"""`rh-host run` as a real subprocess over the sample batches and the sample plugins."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RH_HOST = str(Path(sys.executable).with_name("rh-host"))
SAMPLES = REPO / "sample_plugins"
OPENAI = SAMPLES / "batches" / "openai_sample.jsonl"
VLLM = SAMPLES / "batches" / "vllm_sample.jsonl"
PLUGINS = [SAMPLES / "python" / name for name in ("stats_summary", "error_collector", "jsonl_exporter")]


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temporary directory any uid can read: strict isolation runs plugins as an unprivileged uid,
    which cannot enter pytest's 0700 tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="rh-cli-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def rh_host(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RH_HOST, *map(str, args)],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


def plugin_args(*dirs: Path) -> list[str]:
    return [arg for d in dirs for arg in ("--plugin", str(d))]


def run_json(batch: Path | str, *extra: str | Path, stdin: bytes | None = None) -> tuple[int, dict[str, Any]]:
    proc = rh_host("run", batch, *plugin_args(*PLUGINS), "--json", "-q", *extra, stdin=stdin)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rh-host: error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def test_openai_sample_json_outcome() -> None:
    code, outcome = run_json(OPENAI)
    assert code == 0
    assert set(outcome) == {
        "batch_id", "success", "result_count", "handlers", "output", "conflicts", "duration_ms", "error",
    }  # fmt: skip
    assert outcome["error"] is None  # only a host fault that stopped the whole batch sets it
    assert outcome["success"] is True and outcome["result_count"] == 8
    assert outcome["batch_id"].startswith("openai_sample-")
    assert [(h["name"], h["priority"], h["status"]) for h in outcome["handlers"]] == [
        ("stats_summary", 10, "ok"),
        ("error_collector", 20, "ok"),
        ("jsonl_exporter", 50, "ok"),
    ]
    stats = outcome["handlers"][0]
    assert stats["output"] == {"total": 8, "succeeded": 6, "failed": 2, "error_rate": 0.25}
    assert {"wall_ms", "cpu_ms", "peak_rss_kb"} <= stats["usage"].keys()
    assert stats["version"] == "1.0.0" and stats["runtime"] == "python" and stats["isolation"]
    [summary] = [r for r in stats["logs"] if r["message"] == "batch summarised"]
    assert summary["extra"]["total"] == 8 and summary["extra"]["batch_id"] == outcome["batch_id"]
    output = outcome["output"]
    assert {k: output[k] for k in ("total", "succeeded", "failed", "error_rate")} == stats["output"]
    req7, req8 = output["errors"]
    assert (req7["custom_id"], req7["status_code"], req7["code"]) == ("req-007", None, "batch_expired")  # OpenAI shape
    assert (req8["custom_id"], req8["status_code"], req8["code"]) == ("req-008", 400, "string_above_max_length")
    assert output["exported"] == 6
    # error_rate is set by stats_summary (10) and error_collector (20): the lower number wins
    assert outcome["conflicts"] == [{"key": "error_rate", "winner": "stats_summary", "overridden": ["error_collector"]}]


def test_vllm_sample_json_outcome() -> None:
    code, outcome = run_json(VLLM)
    assert code == 0 and outcome["success"] is True and outcome["result_count"] == 7
    assert outcome["handlers"][0]["output"] == {"total": 7, "succeeded": 5, "failed": 2, "error_rate": 0.2857}
    errors = {e["custom_id"]: e for e in outcome["output"]["errors"]}
    assert errors["request-6"]["status_code"] == 400
    assert "maximum context length" in errors["request-6"]["message"]  # vLLM: error is a string
    assert errors["request-7"]["code"] == 404
    assert errors["request-7"]["message"] == "The model `gpt-5` does not exist."  # vLLM: {"error": {...}}
    assert outcome["output"]["exported"] == 5


def test_the_readable_table(tmp_path: Path) -> None:
    proc = rh_host("run", OPENAI, *plugin_args(*PLUGINS), "-q")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "8 results, 3 handlers" in out
    for name in ("stats_summary", "error_collector", "jsonl_exporter"):
        assert name in out
    header = next(line for line in out.splitlines() if "HANDLER" in line)
    assert all(col in header for col in ("PRI", "STATUS", "WALL", "CPU", "PEAK RSS", "ISOLATION"))
    assert "  total: 8" in out and "  error_rate: 0.25" in out
    assert "error_rate: stats_summary over error_collector" in out
    assert out.rstrip().endswith("SUCCESS: every enabled handler succeeded")
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def strict_error_collector(tmp_path: Path) -> Path:
    """The sample error collector with a threshold the sample batch passes: it fails."""
    target = tmp_path / "error_collector"
    shutil.copytree(SAMPLES / "python" / "error_collector", target)
    manifest = target / "plugin.toml"
    manifest.write_text(manifest.read_text().replace("max_error_rate = 0.5", "max_error_rate = 0.1"))
    return target


def test_exit_1_when_a_handler_fails(public_tmp: Path) -> None:
    strict = strict_error_collector(public_tmp)
    proc = rh_host("run", OPENAI, *plugin_args(PLUGINS[0], strict), "--json", "-q")
    assert proc.returncode == 1, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["success"] is False
    statuses = {h["name"]: h["status"] for h in outcome["handlers"]}
    assert statuses == {"stats_summary": "ok", "error_collector": "failed"}
    assert outcome["handlers"][1]["error"] == "handle() returned False"
    assert "errors" not in outcome["output"]  # a failed handler's output is not merged

    table = rh_host("run", OPENAI, *plugin_args(PLUGINS[0], strict), "-q")
    assert table.returncode == 1
    assert "└ handle() returned False" in table.stdout
    assert "ERROR   error rate 25.00% is above the threshold 10.00%" in table.stdout  # failing logs shown
    assert "FAILED: 1 of 2 handlers did not succeed" in table.stdout


def test_a_run_the_host_cannot_start_is_a_host_error_and_exit_1(public_tmp: Path) -> None:
    hidden = public_tmp / "hidden"
    shutil.copytree(PLUGINS[0], hidden)
    hidden.chmod(0o700)  # the sandbox uid cannot read it: the sandbox refuses, the handler never starts
    proc = rh_host("run", OPENAI, *plugin_args(hidden, PLUGINS[1]), "--json", "-q", "--isolation", "strict")
    assert proc.returncode == 1, proc.stderr
    outcome = json.loads(proc.stdout)
    statuses = {h["name"]: h["status"] for h in outcome["handlers"]}
    assert statuses == {"stats_summary": "host_error", "error_collector": "ok"}
    assert outcome["success"] is False
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rh-host: error: ")]
    assert len(errors) == 1 and "host error, not the handlers' fault" in errors[0], proc.stderr
    assert "stats_summary (sandbox fault: plugin dir" in errors[0]
    tested = rh_host("plugin", "test", hidden, OPENAI, "--isolation", "strict")  # the same for a plugin author
    assert tested.returncode == 1 and "host_error" in tested.stdout
    assert "rh-host: error: host error, not the handlers' fault: 1 handler(s)" in tested.stderr


def test_logs_flag_shows_every_log_record() -> None:
    without = rh_host("run", OPENAI, *plugin_args(PLUGINS[0]), "-q")
    with_logs = rh_host("run", OPENAI, *plugin_args(PLUGINS[0]), "-q", "--logs")
    assert "batch summarised" not in without.stdout
    assert "INFO    batch summarised" in with_logs.stdout


def test_dash_reads_stdin() -> None:
    code, outcome = run_json("-", stdin=OPENAI.read_bytes())
    assert code == 0
    assert outcome["batch_id"] == "stdin" and outcome["result_count"] == 8
    assert outcome["output"]["total"] == 8


def echo_plugin(tmp_path: Path) -> Path:
    directory = tmp_path / "echo"
    directory.mkdir()
    (directory / "plugin.toml").write_text(
        'name = "echo"\nversion = "0.1"\nruntime = "python"\nentry = "handler:Echo"\nencoding = "json"\n'
    )
    (directory / "handler.py").write_text(
        "from rh_sdk import ResultHandler\n\n\n"
        "class Echo(ResultHandler):\n"
        "    def handle(self, batch_id, results, metadata):\n"
        '        return {"batch_id": batch_id, "metadata": metadata, "n": len(results)}\n'
    )
    return directory


def test_metadata_and_batch_id_reach_the_handler(public_tmp: Path) -> None:
    proc = rh_host(
        "run", VLLM, *plugin_args(echo_plugin(public_tmp)), "--json", "-q",
        "--metadata", '{"user_id": "u-1", "project": "p"}', "--batch-id", "batch-42",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["batch_id"] == "batch-42"
    assert outcome["output"] == {"batch_id": "batch-42", "metadata": {"user_id": "u-1", "project": "p"}, "n": 7}


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [("{not json", "--metadata: invalid JSON"), ("[1, 2]", "--metadata: must be a JSON object, got list")],
)
def test_invalid_metadata_is_exit_2(metadata: str, fragment: str) -> None:
    assert_one_line_error(rh_host("run", OPENAI, *plugin_args(PLUGINS[0]), "--metadata", metadata), fragment)


def test_a_missing_results_file_is_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert_one_line_error(rh_host("run", missing, *plugin_args(PLUGINS[0])), str(missing), "cannot read")


def test_a_malformed_line_is_exit_2_with_its_number(tmp_path: Path) -> None:
    batch = tmp_path / "bad.jsonl"
    batch.write_bytes(OPENAI.read_bytes().replace(b"\n", b"\n{oops\n", 1))
    assert_one_line_error(rh_host("run", batch, *plugin_args(PLUGINS[0])), f"{batch}:2: not a JSON object")


def test_duplicate_plugin_names_are_exit_2(tmp_path: Path) -> None:
    copy = tmp_path / "stats_copy"
    shutil.copytree(PLUGINS[0], copy)
    line = assert_one_line_error(rh_host("run", OPENAI, *plugin_args(PLUGINS[0], copy)), "'stats_summary'")
    assert str(copy) in line and str(PLUGINS[0]) in line


def test_an_invalid_plugin_is_exit_2_naming_the_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(PLUGINS[0], broken)
    manifest = broken / "plugin.toml"
    manifest.write_text(manifest.read_text().replace("priority = 10", "prority = 10"))
    assert_one_line_error(rh_host("run", OPENAI, *plugin_args(broken)), str(manifest), "`prority`")
    assert_one_line_error(rh_host("run", OPENAI, "--plugin", tmp_path / "absent"), "plugin.toml: no such file")


def test_usage_errors_are_exit_2() -> None:
    assert rh_host("run", OPENAI).returncode == 2  # --plugin is required
    assert rh_host("run", OPENAI, *plugin_args(PLUGINS[0]), "--parallel", "0").returncode == 2


def test_progress_on_stderr_for_long_batches(tmp_path: Path) -> None:
    line = OPENAI.read_bytes().splitlines()[0] + b"\n"
    big = tmp_path / "big.jsonl"
    big.write_bytes(line * 10_000)
    proc = rh_host("run", big, *plugin_args(PLUGINS[0]), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "10000 results, 1 plugins" in proc.stderr
    assert "[1/1] stats_summary (priority 10) started" in proc.stderr
    assert "[1/1] stats_summary: ok in" in proc.stderr
    assert json.loads(proc.stdout)["output"]["total"] == 10_000  # progress never pollutes stdout
    quiet = rh_host("run", big, *plugin_args(PLUGINS[0]), "--json", "-q")
    assert "started" not in quiet.stderr


MOON = REPO / "tests" / "service" / "plugins" / "asks_the_moon"  # asks 6000 tasks, 100000 MiB scratch, 10^6 fds


def test_a_run_without_a_tenant_is_clamped_to_the_operator_defaults() -> None:
    proc = rh_host("run", OPENAI, *plugin_args(MOON, PLUGINS[0]), "--json", "-q")
    assert proc.returncode in (0, 1), proc.stderr
    handlers = {h["name"]: h for h in json.loads(proc.stdout)["handlers"]}
    moon = handlers["asks_the_moon"]
    assert moon["clamped_limits"] == {
        "max_processes": {"requested": 6000, "effective": 64},
        "scratch_mb": {"requested": 100000, "effective": 256},
        "max_open_files": {"requested": 1000000, "effective": 1024},
    }
    if moon["status"] == "ok":  # else the thread storm met the 64-task limit and the run was killed for it
        assert moon["output"]["moon.nofile"] == 1024 and moon["output"]["moon.scratch_mb"] == 256
    else:
        assert "process limit of 64 reached" in moon["error"], moon["error"]
    assert handlers["stats_summary"]["clamped_limits"] == {} and handlers["stats_summary"]["status"] == "ok"


def test_plugin_test_shows_the_clamped_limits() -> None:
    proc = rh_host("plugin", "test", MOON, OPENAI)
    assert "limits clamped to the ceilings: max_processes 6000 -> 64, scratch_mb 100000 -> 256" in proc.stdout
    assert "max_open_files 1000000 -> 1024" in proc.stdout


def test_quota_options_set_the_ceilings_of_a_run() -> None:
    proc = rh_host("run", OPENAI, *plugin_args(MOON), "--json", "-q", "--quota", "max_open_files=32")
    assert proc.returncode in (0, 1), proc.stderr
    moon = json.loads(proc.stdout)["handlers"][0]
    assert moon["clamped_limits"]["max_open_files"] == {"requested": 1000000, "effective": 32}
    assert moon["clamped_limits"]["max_processes"] == {"requested": 6000, "effective": 64}  # the other defaults
    assert_one_line_error(
        rh_host("run", OPENAI, *plugin_args(MOON), "--quota", "max_open_files=-1"), "must be positive"
    )
    assert_one_line_error(rh_host("plugin", "test", MOON, OPENAI, "--quota", "nofiles=1"), "unknown field `nofiles`")
