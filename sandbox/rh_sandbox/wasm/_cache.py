"""Compiled modules on disk, keyed by module hash and engine fingerprint.

Compiling a 100 KB module costs tens of milliseconds; deserializing it costs tens of microseconds.
Files are written to a temporary name and renamed, so concurrent workers never read half a file.
The cache directory must be writable only by the host and its workers: deserializing trusts it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import wasmtime

from rh_sandbox.wasm._engine import engine_fingerprint

__all__ = ["ModuleCache"]


class ModuleCache:
    """Compile-or-load for one engine; a missing or stale cache entry just means compiling."""

    def __init__(self, engine: wasmtime.Engine, cache_dir: str | os.PathLike[str] | None) -> None:
        self._engine = engine
        self._dir = Path(cache_dir) / engine_fingerprint() if cache_dir is not None else None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path_for(self, module_hash: str) -> Path | None:
        return None if self._dir is None else self._dir / f"{module_hash}.cwasm"

    def load(self, module_hash: str, wasm: bytes) -> wasmtime.Module:
        """The compiled module for ``wasm`` (whose sha256 is ``module_hash``). Raises WasmtimeError."""
        module = self.load_cached(module_hash)
        if module is None:
            module = compile_module(self._engine, wasm)
            path = self.path_for(module_hash)
            if path is not None:
                self._store(path, module)
        return module

    def load_cached(self, module_hash: str) -> wasmtime.Module | None:
        """Only from disk; ``None`` when never compiled with this engine, or the file is unusable (written
        by another wasmtime, truncated): the caller recompiles and the new file replaces it."""
        path = self.path_for(module_hash)
        if path is None or not path.exists():
            return None
        try:
            return wasmtime.Module.deserialize_file(self._engine, str(path))
        except wasmtime.WasmtimeError:
            return None

    def _store(self, path: Path, module: wasmtime.Module) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(module.serialize())
            os.replace(tmp, path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)  # a full disk costs a recompile, not a run


def compile_module(engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
    """Binary modules as is; anything else is taken as WAT text (``entry = "handler.wat"``)."""
    if not wasm.startswith(b"\0asm"):
        try:
            text = wasm.decode("utf-8")
        except UnicodeDecodeError:
            raise wasmtime.WasmtimeError("not a WebAssembly module (neither binary nor WAT text)") from None
        wasm = bytes(wasmtime.wat2wasm(text))
    return wasmtime.Module(engine, wasm)
