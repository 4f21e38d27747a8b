"""WebAssembly handlers: WASI preview 1 command modules under wasmtime, in sandboxed worker processes.

The contract a guest sees (stdin, stdout, stderr, exit codes, limits) is docs/wasm-abi.md.

Modules: ``_engine`` (the one engine configuration), ``_cache`` (compiled modules on disk), ``_guest``
(one run in a fresh store, inside a worker), ``_worker`` (the worker process), ``_frames`` (host <->
worker pipe protocol), ``_pool`` (worker processes), ``_classify`` (facts -> status), ``_backend``
(WasmBackend), ``_strict`` (workers in the strict sandbox), ``_validate`` (upload-time checks),
``_capi`` (ctypes calls wasmtime-py lacks).
"""

from rh_sandbox.wasm._backend import WasmBackend
from rh_sandbox.wasm._engine import FUEL_PER_CPU_SECOND, MAX_MODULE_BYTES, fuel_for
from rh_sandbox.wasm._pool import CommandWrapper, worker_command
from rh_sandbox.wasm._validate import WasmModuleError, validate_module

__all__ = [
    "FUEL_PER_CPU_SECOND",
    "MAX_MODULE_BYTES",
    "CommandWrapper",
    "StrictWorkers",
    "WasmBackend",
    "WasmModuleError",
    "WorkerRuntime",
    "fuel_for",
    "validate_module",
    "worker_command",
]


def __getattr__(name: str) -> object:
    """The strict level's pieces load where they are used, not in every worker that imports this package."""
    if name in ("StrictWorkers", "WorkerRuntime"):
        from rh_sandbox.wasm import _strict

        return getattr(_strict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
