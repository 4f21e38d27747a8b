"""validate_module: refuse a malformed or hostile module at upload time, in bounded time and memory.

The check runs in a one-shot worker (``--validate``) under RLIMIT_DATA and a wall-clock kill, because
compiling is where hostile modules bite: a million nested blocks took 4 s and 1 GB to compile here.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from rh_sandbox.wasm._backend import worker_command
from rh_sandbox.wasm._engine import MAX_MODULE_BYTES
from rh_sandbox.wasm._pool import CLEAN_ENV

__all__ = ["WasmModuleError", "validate_module"]


class WasmModuleError(ValueError):
    """The module cannot be run here; the message says why in terms a plugin author can act on."""


def validate_module(path: str | os.PathLike[str], *, timeout_seconds: float = 20.0, memory_mb: int = 1024) -> None:
    """Raise :class:`WasmModuleError` unless ``path`` is a WASI command module this host will run:
    valid, within size, importing only WASI, exporting ``_start`` and ``memory``, instantiable under
    the default limits with a start function (if any) that neither traps nor spins."""
    try:
        size = os.path.getsize(path)
        if size > MAX_MODULE_BYTES:
            raise WasmModuleError(f"{path}: module is {size} bytes, the limit is {MAX_MODULE_BYTES}")
        with open(path, "rb") as f:
            wasm = f.read()
    except OSError as exc:
        raise WasmModuleError(f"{path}: cannot read module: {exc}") from exc
    argv = [*worker_command(None, data_mb=memory_mb), "--validate"]
    with tempfile.TemporaryDirectory(prefix="rh-wasm-validate-") as scratch:
        try:
            proc = subprocess.run(
                argv,
                input=wasm,
                capture_output=True,
                env=CLEAN_ENV,
                cwd=scratch,
                timeout=timeout_seconds,
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise WasmModuleError(f"{path}: checking the module took longer than {timeout_seconds:g} s") from None
    reason = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode == 0:
        return
    if proc.returncode == 1 and reason:
        raise WasmModuleError(f"{path}: {reason}")
    if proc.returncode < 0 or "memory allocation" in proc.stderr.decode("utf-8", "replace"):
        raise WasmModuleError(
            f"{path}: checking the module exceeded its resources (exit {proc.returncode}); "
            f"it is too large or too deeply nested to compile within {memory_mb} MiB"
        )
    raise WasmModuleError(f"{path}: module check failed (exit {proc.returncode}): {reason or proc.stderr[-300:]!r}")
