"""The one place that builds a wasmtime engine, so every compiled module matches every loader.

A serialized module loads only into an engine with the same configuration, so the configuration is also
folded into a fingerprint that keys the on-disk cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform

import wasmtime

__all__ = [
    "FUEL_PER_CPU_SECOND",
    "MAX_MODULE_BYTES",
    "MAX_TABLE_ELEMENTS",
    "MAX_WASM_STACK_BYTES",
    "engine_fingerprint",
    "fuel_for",
    "make_engine",
]

# Fuel is roughly one unit per wasm instruction. A tight loop under fuel accounting ran at about
# 1.0e9 units per CPU second on the reference machine (bench/bench_wasm.py --fuel-rate measures it),
# so a plugin's cpu_seconds becomes cpu_seconds * FUEL_PER_CPU_SECOND units.
FUEL_PER_CPU_SECOND = 1_000_000_000
MAX_WASM_STACK_BYTES = 512 * 1024
MAX_TABLE_ELEMENTS = 100_000
MAX_MODULE_BYTES = 16 * 1024 * 1024

# Every setting that changes generated code or its loadability; part of the cache key.
_SETTINGS: dict[str, object] = {
    "consume_fuel": True,
    "epoch_interruption": True,
    "max_wasm_stack": MAX_WASM_STACK_BYTES,
    "wasm_threads": False,
    "shared_memory": False,
    "wasm_memory64": False,
    "parallel_compilation": False,
    "cranelift_opt_level": "speed",
}


def make_engine() -> wasmtime.Engine:
    """Fuel (CPU budget) and epochs (wall clock) on; threads and shared memory off."""
    config = wasmtime.Config()
    for name, value in _SETTINGS.items():
        setattr(config, name, value)
    return wasmtime.Engine(config)


def engine_fingerprint() -> str:
    """Identifies the generated-code format: wasmtime version, settings and host architecture."""
    version = importlib.metadata.version("wasmtime")
    text = repr((version, platform.machine(), sorted(_SETTINGS.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fuel_for(cpu_seconds: float) -> int:
    return max(1, int(cpu_seconds * FUEL_PER_CPU_SECOND))
