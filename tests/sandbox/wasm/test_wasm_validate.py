"""validate_module: hostile modules refused with a clear error, within bounded time and memory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import wasm_guests as g

from rh_sandbox.wasm import WasmModuleError, validate_module


def _write(tmp_path: Path, source: str | bytes) -> Path:
    path = tmp_path / ("handler.wat" if isinstance(source, str) else "handler.wasm")
    if isinstance(source, str):
        path.write_text(source)
    else:
        path.write_bytes(source)
    return path


def test_valid_module_passes(tmp_path: Path) -> None:
    validate_module(_write(tmp_path, g.replying({"ran": True, "ok": True})))


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (os.urandom(4096), "not a WebAssembly module"),
        (b"\x00asm\x01\x00\x00\x00" + os.urandom(512), "failed to parse"),
        (g.UNKNOWN_IMPORT, "unknown import env::steal"),
        (g.TRAPPING_START, "start function trapped"),
        (g.SPINNING_START, "start function trapped"),
        (g.HUGE_TABLE, "table minimum size of 10000000 elements exceeds table limits"),
        (g.NO_START, "no exported function `_start`"),
    ],
    ids=[
        "random",
        "random-after-magic",
        "unknown-import",
        "trapping-start",
        "spinning-start",
        "huge-table",
        "no-start",
    ],
)
def test_hostile_module_refused(tmp_path: Path, source: str | bytes, needle: str) -> None:
    with pytest.raises(WasmModuleError) as info:
        validate_module(_write(tmp_path, source))
    assert needle in str(info.value)


def test_deeply_nested_blocks_refused_within_bounds(tmp_path: Path) -> None:
    # A million nested blocks needs about 1 GB and 4 s to compile here; 128 MiB stops it early.
    path = _write(tmp_path, g.nested_blocks(1_000_000))
    started = time.monotonic()
    with pytest.raises(WasmModuleError, match=r"exceeded its resources|took longer"):
        validate_module(path, memory_mb=128, timeout_seconds=30)
    assert time.monotonic() - started < 60


def test_oversized_module_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.wasm"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    with pytest.raises(WasmModuleError, match="limit"):
        validate_module(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WasmModuleError, match="cannot read"):
        validate_module(tmp_path / "absent.wasm")
