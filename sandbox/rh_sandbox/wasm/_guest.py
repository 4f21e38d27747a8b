"""Inside a worker: run one invocation in a fresh store and report the raw facts of how it ended.

Each run gets a new Store and WASI context: stdin from the invocation bytes, stdout and stderr to files
on tmpfs (capped by the worker's RLIMIT_FSIZE), nothing preopened, no environment, no arguments but
the handler's name. Fuel and the epoch deadline are both armed before instantiation, so a start
function is held to the same limits as ``_start``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import wasmtime

from rh_sandbox.errors import SandboxError
from rh_sandbox.wasm._cache import ModuleCache
from rh_sandbox.wasm._capi import set_stdin_bytes
from rh_sandbox.wasm._engine import MAX_TABLE_ELEMENTS
from rh_sandbox.wasm._frames import Request, Response
from rh_sandbox.wasm._net import HOST_MODULE, NET_IMPORTS, HttpBridge

__all__ = ["GuestRunner", "ModuleRefused", "check_module"]

WASI_MODULE = "wasi_snapshot_preview1"
_PAGE = 65536


class ModuleRefused(SandboxError):
    """The module is not a WASI command module this host can run."""


def check_module(module: wasmtime.Module) -> None:
    """A WASI preview 1 command: imports only WASI (and rh-host's HTTP functions), exports a ``_start``
    function and a memory."""
    for imp in module.imports:
        if imp.module == HOST_MODULE and imp.name in NET_IMPORTS:
            continue
        if imp.module != WASI_MODULE:
            raise ModuleRefused(
                f"unknown import {imp.module}::{imp.name} (only {WASI_MODULE} and "
                f"{HOST_MODULE}::{', '.join(sorted(NET_IMPORTS))} are provided)"
            )
    exports = {exp.name: exp.type for exp in module.exports}
    if not isinstance(exports.get("_start"), wasmtime.FuncType):
        raise ModuleRefused("no exported function `_start` (build a WASI command, not a library)")
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        raise ModuleRefused("no exported memory `memory`")


def store_limits(store: wasmtime.Store, memory_bytes: int) -> None:
    store.set_limits(memory_size=memory_bytes, table_elements=MAX_TABLE_ELEMENTS, instances=4, tables=4, memories=1)


class GuestRunner:
    """Owns the engine-wide state of a worker: the linker and one InstancePre per module seen."""

    def __init__(self, engine: wasmtime.Engine, cache: ModuleCache, scratch: Path) -> None:
        self._engine = engine
        self._cache = cache
        self._linker = wasmtime.Linker(engine)
        self._linker.define_wasi()
        self._net = HttpBridge()
        self._net.define(self._linker)
        self._pres: dict[str, wasmtime.InstancePre] = {}
        self._stdout = str(scratch / "stdout")
        self._stderr = str(scratch / "stderr")

    def prepare(self, module_hash: str, wasm: bytes | None) -> wasmtime.InstancePre:
        pre = self._pres.get(module_hash)
        if pre is not None:
            return pre
        if wasm is not None:
            module = self._cache.load(module_hash, wasm)
        else:
            cached = self._cache.load_cached(module_hash)
            if cached is None:
                raise ModuleRefused(f"module {module_hash[:12]} was neither sent nor cached")
            module = cached
        check_module(module)
        pre = self._linker.instantiate_pre(module)
        self._pres[module_hash] = pre
        return pre

    def load(self, req: Request) -> Response:
        """Compile or load the request's module: "loaded", or "refused" with the reason."""
        try:
            self.prepare(req.module_hash, req.module)
        except ModuleRefused as exc:
            return Response("refused", message=str(exc))
        except wasmtime.WasmtimeError as exc:
            return Response("refused", message=f"invalid module: {exc}")
        return Response("loaded")

    def run(self, req: Request) -> Response:
        loaded = self.load(req)
        if loaded.outcome != "loaded":
            return loaded
        pre = self._pres[req.module_hash]

        store = wasmtime.Store(self._engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["handler"]
        set_stdin_bytes(wasi, req.payload)
        wasi.stdout_file = self._stdout
        wasi.stderr_file = self._stderr
        store.set_wasi(wasi)
        store_limits(store, req.memory_bytes)
        store.set_fuel(req.fuel)
        store.set_epoch_deadline(1)  # the worker's WallClock advances the epoch once, at the deadline

        cpu0 = time.process_time()  # the worker's, all threads: what its CpuClock counts
        instance = None
        self._net.begin(req.egress_socket, req.grants, time.monotonic() + req.wall_seconds)
        try:
            instance = pre.instantiate(store)
            start = instance.exports(store)["_start"]
            if not isinstance(start, wasmtime.Func):  # check_module makes this unreachable
                raise wasmtime.WasmtimeError("`_start` is not a function")
            start(store)
            resp = Response("exit", exit_code=0)
        except wasmtime.ExitTrap as exc:
            resp = Response("exit", exit_code=exc.code)
        except wasmtime.Trap as exc:
            code = exc.trap_code
            resp = Response("trap", trap_code=code.name if code is not None else None, message=exc.message)
        except wasmtime.WasmtimeError as exc:
            # Before an instance exists this is instantiation refused (a memory or table limit, usually).
            resp = Response("refused" if instance is None else "trap", message=str(exc))
        finally:
            self._net.end()
        resp.cpu_ms = (time.process_time() - cpu0) * 1000.0
        resp.fuel_used = req.fuel - store.get_fuel()
        if instance is not None:
            memory = instance.exports(store).get("memory")
            if isinstance(memory, wasmtime.Memory):
                resp.memory_bytes = memory.data_len(store)
        headroom = max(_PAGE, req.memory_bytes // 8)
        resp.memory_at_limit = resp.memory_bytes + headroom > req.memory_bytes or (
            resp.outcome == "refused" and "memory" in (resp.message or "") and "limit" in (resp.message or "")
        )
        resp.stdout, resp.stdout_over = _read_capped(self._stdout, req.max_output_bytes)
        resp.stderr, resp.stderr_over = _read_capped(self._stderr, req.max_log_bytes)
        return resp


def _read_capped(path: str, limit: int) -> tuple[bytes, bool]:
    """The file's bytes, or nothing and True when the guest wrote more than ``limit``."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return b"", False
    if size > limit:
        with open(path, "rb") as f:
            return f.read(limit), True
    with open(path, "rb") as f:
        return f.read(), False
