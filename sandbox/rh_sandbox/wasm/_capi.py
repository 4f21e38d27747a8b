"""The ctypes-level calls wasmtime-py does not wrap. Kept in this one file on purpose."""

from __future__ import annotations

import ctypes

import wasmtime
from wasmtime import _ffi as ffi

__all__ = ["set_stdin_bytes"]


def set_stdin_bytes(config: wasmtime.WasiConfig, data: bytes) -> None:
    """Give the guest ``data`` as its stdin without a temporary file (``wasi_config_set_stdin_bytes``).

    The C API takes ownership of the byte vector, so it is allocated by wasmtime and copied into.
    """
    vec = ffi.wasm_byte_vec_t()
    if data:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        ffi.wasm_byte_vec_new(ctypes.byref(vec), len(data), buf)
    else:
        ffi.wasm_byte_vec_new_empty(ctypes.byref(vec))
    ffi.wasi_config_set_stdin_bytes(config.ptr(), ctypes.byref(vec))
