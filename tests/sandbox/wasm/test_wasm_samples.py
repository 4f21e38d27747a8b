"""The WebAssembly sample plugins (C, Zig, AssemblyScript) give the same outcome as their Python twin.

The samples are compiled once per session by sample_plugins/wasm/build.py; a language whose toolchain
is genuinely absent is skipped with the install hint (scripts/install.sh --test installs them all).
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from rh_sandbox.types import Limits, RunSpec, RunStatus
from rh_sandbox.wasm import WasmBackend, validate_module
from rh_sdk.protocol import Invocation, ResultLine, encode_invocation
from rh_sdk.runner import install_seed_alias
from rh_sdk.testing import openai_error, openai_result, run_handler, vllm_error

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "sample_plugins" / "wasm"
BATCHES = ROOT / "sample_plugins" / "batches"
LANGS = ["c", "zig", "as"]


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def built() -> dict[str, Path | str]:
    """lang -> plugin dir, or the reason its toolchain is missing."""
    build = _load(SAMPLES / "build.py", "rh_wasm_sample_build")
    out: dict[str, Path | str] = {}
    for lang in LANGS:
        try:
            out[lang] = build.build(lang)
        except build.ToolchainMissing as exc:
            out[lang] = str(exc)
    return out


def _jsonl(name: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in (BATCHES / name).read_bytes().splitlines() if line.strip()]


BATCH_CASES: dict[str, list[dict[str, Any]]] = {
    "openai": _jsonl("openai_sample.jsonl"),
    "vllm": _jsonl("vllm_sample.jsonl"),
    "both": _jsonl("openai_sample.jsonl") + _jsonl("vllm_sample.jsonl"),
    "empty": [],
    "mixed": [
        openai_result("a", "fine"),
        openai_result("b", "rate limited", status_code=429),
        openai_error("c"),
        vllm_error("d"),
        {**openai_result("e", "empty error counts as none"), "error": ""},
        {**openai_result("f", 'unicode \u00b0C \U0001f600 and "quotes"')},
        {"custom_id": "g", "response": None, "error": {"code": "x", "message": "y"}},
    ],
    "one-third": [openai_result("a", "x"), openai_error("b"), openai_error("c")],
}


def _python_twin(results: list[dict[str, Any]], config: dict[str, Any]) -> Any:
    install_seed_alias()  # the plugin imports core.result_handlers.base, as the guide shows
    handler = _load(ROOT / "sample_plugins" / "python" / "stats_summary" / "handler.py", "stats_summary_handler")
    reply, _logs = run_handler(handler.StatsSummaryHandler, config, results, {"source": "test"}, "b-1")
    return reply


def _spec(plugin: Path) -> RunSpec:
    manifest = tomllib.loads((plugin / "plugin.toml").read_text())
    return RunSpec(
        name=manifest["name"],
        runtime=manifest["runtime"],
        plugin_dir=str(plugin),
        entry=manifest["entry"],
        encoding=manifest["encoding"],
        limits=Limits(**manifest.get("limits", {})),
        version=manifest["version"],
    )


@pytest.fixture(scope="module")
def samples_backend(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with WasmBackend(cache_dir=tmp_path_factory.mktemp("cache"), workers=2) as backend:
        yield backend


def _plugin(built: dict[str, Path | str], lang: str) -> Path:
    plugin = built[lang]
    if isinstance(plugin, str):
        pytest.skip(plugin)
    return plugin


@pytest.mark.parametrize("case", list(BATCH_CASES))
@pytest.mark.parametrize("lang", LANGS)
def test_sample_matches_python_twin(built: dict[str, Path | str], samples_backend: Any, lang: str, case: str) -> None:
    plugin = _plugin(built, lang)
    results = BATCH_CASES[case]
    invocation = Invocation(
        batch_id="b-1",
        handler=lang,
        config={"enabled": True},
        metadata={"source": "test"},
        results=[msgspec.convert(r, ResultLine) for r in results],
    )
    run = samples_backend.run(_spec(plugin), encode_invocation(invocation, "json"))
    twin = _python_twin(results, {"enabled": True})
    assert run.status is RunStatus.OK, run.error
    assert run.reply is not None
    assert run.reply.output == twin.output
    assert run.reply.ok == twin.ok and run.reply.ran == twin.ran
    assert [r.level for r in run.logs] == ["INFO"]
    assert run.usage.fuel and run.usage.fuel > 0


@pytest.mark.parametrize("lang", LANGS)
def test_sample_skips_when_disabled(built: dict[str, Path | str], samples_backend: Any, lang: str) -> None:
    plugin = _plugin(built, lang)
    invocation = Invocation(batch_id="b-1", handler=lang, config={"enabled": False})
    run = samples_backend.run(_spec(plugin), encode_invocation(invocation, "json"))
    assert run.status is RunStatus.SKIPPED


@pytest.mark.parametrize("lang", LANGS)
def test_sample_given_msgpack_reports_protocol_error(
    built: dict[str, Path | str], samples_backend: Any, lang: str
) -> None:
    # A JSON guest fed MessagePack (a manifest without encoding = "json") must say so, not crash.
    plugin = _plugin(built, lang)
    invocation = Invocation(batch_id="b-1", handler=lang)
    run = samples_backend.run(_spec(plugin), encode_invocation(invocation, "msgpack"))
    assert run.status in (RunStatus.PROTOCOL_ERROR, RunStatus.CRASHED, RunStatus.FAILED)
    assert run.status is not RunStatus.OK


@pytest.mark.parametrize("lang", LANGS)
def test_sample_passes_upload_validation(built: dict[str, Path | str], lang: str) -> None:
    validate_module(_plugin(built, lang) / "handler.wasm")
