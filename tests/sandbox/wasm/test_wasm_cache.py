"""The compiled-module cache: compile once, load by hash, survive a corrupt or foreign file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import wasm_guests as g
import wasmtime

from rh_sandbox.wasm._cache import ModuleCache
from rh_sandbox.wasm._engine import engine_fingerprint, make_engine


def _wasm() -> tuple[str, bytes]:
    wasm = bytes(wasmtime.wat2wasm(g.replying({"ran": True, "ok": True})))
    return hashlib.sha256(wasm).hexdigest(), wasm


def test_compiled_module_is_stored_under_engine_fingerprint(tmp_path: Path) -> None:
    digest, wasm = _wasm()
    ModuleCache(make_engine(), tmp_path).load(digest, wasm)
    assert (tmp_path / engine_fingerprint() / f"{digest}.cwasm").stat().st_size > 0


def test_second_engine_loads_from_disk_without_the_source(tmp_path: Path) -> None:
    digest, wasm = _wasm()
    ModuleCache(make_engine(), tmp_path).load(digest, wasm)
    module = ModuleCache(make_engine(), tmp_path).load_cached(digest)
    assert module is not None
    assert {e.name for e in module.exports} == {"memory", "_start"}


def test_corrupt_cache_entry_is_recompiled(tmp_path: Path) -> None:
    digest, wasm = _wasm()
    cache = ModuleCache(make_engine(), tmp_path)
    path = cache.path_for(digest)
    assert path is not None
    path.write_bytes(b"not a compiled module")
    assert cache.load_cached(digest) is None
    module = cache.load(digest, wasm)
    assert {e.name for e in module.exports} == {"memory", "_start"}
    assert path.read_bytes().startswith(b"\x7fELF")  # replaced by a real artefact


def test_no_cache_dir_compiles_in_memory(tmp_path: Path) -> None:
    digest, wasm = _wasm()
    cache = ModuleCache(make_engine(), None)
    assert cache.load_cached(digest) is None
    assert cache.load(digest, wasm) is not None
