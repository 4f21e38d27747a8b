from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from wasm_helpers import RunWat, wasm_backend, write_plugin

from rh_sandbox.probe import Probe
from rh_sandbox.types import Limits, RunResult, RunSpec
from rh_sandbox.wasm import WasmBackend


@pytest.fixture(scope="module", params=["basic", "strict"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, machine: Probe
) -> Iterator[WasmBackend]:
    """Every ABI test at both levels: the guest must see the same contract in the strict sandbox."""
    with wasm_backend(request.param, machine, cache_dir=tmp_path_factory.mktemp("wasm-cache"), workers=2) as b:
        yield b


@pytest.fixture
def run_wat(backend: WasmBackend, tmp_path: Path) -> RunWat:
    """Run one WAT (or binary) guest with the given limits; returns the RunResult."""

    def run(source: str | bytes, payload: bytes = b"{}", group: str = "default", **limits: float) -> RunResult:
        name = "handler.wat" if isinstance(source, str) else "handler.wasm"
        write_plugin(tmp_path / "plugin", source, name)
        spec = RunSpec(
            name="t",
            runtime="wasm",
            plugin_dir=str(tmp_path / "plugin"),
            entry=name,
            encoding="json",
            limits=Limits(**limits),  # type: ignore[arg-type]
            group=group,
        )
        return backend.run(spec, payload)

    return run
