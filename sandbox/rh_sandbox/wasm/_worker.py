"""The worker process: runs wasm for the host, one request at a time, over framed pipes.

Started by :mod:`rh_sandbox.wasm._pool` as ``python -I -m rh_sandbox.wasm._worker --cache-dir DIR``. A wasmtime
abort, a runaway compile or a guest blocked in a host call kills or hangs this process, never the host;
the host replaces it. Before it reads any untrusted byte it lowers its own rlimits (no ``preexec_fn``
needed on the host side, which is unsafe with threads). Each run is held to its wall limit by the
:class:`WallClock` and to its CPU limit, host calls included, by the :class:`~._cpu_clock.CpuClock`.

``--validate`` mode is the one-shot check behind :func:`rh_sandbox.wasm.validate_module`: after its
``Ready`` frame it reads one frame (a module's bytes), checks the module as a run would, answers one
``Verdict`` frame and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import wasmtime

from rh_sandbox.wasm._cache import ModuleCache, compile_module
from rh_sandbox.wasm._cpu_clock import CpuClock
from rh_sandbox.wasm._engine import engine_fingerprint, make_engine
from rh_sandbox.wasm._frames import FrameError, Ready, Request, Response, Verdict, read_frame, write_frame
from rh_sandbox.wasm._guest import GuestRunner, ModuleRefused, check_module, store_limits
from rh_sandbox.wasm._net import HttpBridge

MAX_FILE_BYTES = 64 * 1024 * 1024  # hard cap on any one guest output file
VALIDATE_FUEL = 50_000_000
VALIDATE_CPU_SECONDS = 0.05  # the start function's CPU, host calls included (VALIDATE_FUEL's worth)
VALIDATE_MEMORY_BYTES = 256 * 1024 * 1024


def limit_self(data_mb: int) -> None:
    """Lower this process's limits; only ever downwards, so no privilege is needed."""

    def lower(res: int, value: int) -> None:
        _soft, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(res, (value, value))

    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_NOFILE, 64)
    lower(resource.RLIMIT_FSIZE, MAX_FILE_BYTES)
    # Counts only writable private mappings: wasmtime's PROT_NONE reservations are free, committed
    # linear memory and compiler scratch are not.
    lower(resource.RLIMIT_DATA, data_mb * 1024 * 1024)
    # A write over RLIMIT_FSIZE must fail with EFBIG, not kill the worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def confine_self(args: dict) -> None:
    """Join the worker's cgroup; apply Landlock and seccomp (the strict level's, see
    ``Confinement.boot_args``). Both bind the calling thread and the threads it starts later, so this
    runs before any: the wall clock's, wasmtime's compiler threads."""
    from rh_sandbox.guest import confine

    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        raise RuntimeError("the worker must confine itself before it starts a thread")
    confine.join_cgroups(args.get("cgroup_fds", []))  # before anything untrusted: all it starts is counted
    if args.get("landlock_abi"):
        rules = [(path, access) for path, access in args["landlock"]]
        confine.apply_landlock(rules, args["landlock_abi"], args.get("landlock_connect_ports"))
    if args.get("seccomp"):
        with open(args["seccomp"], "rb") as f:
            confine.load_seccomp(f.read())


class WallClock:
    """Advances the engine's epoch exactly once, when the current run's wall limit passes.

    Stores wait for one epoch tick, so a computing guest traps with INTERRUPT on time. Ticking
    periodically instead would drift (1000 wake-ups of a loaded machine take well over 10 s) and cost
    wake-ups in idle workers. The lock makes a late tick impossible once the run is disarmed, so a tick
    meant for one run never interrupts the next.
    """

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._sleeping_until = math.inf  # when the thread wakes next on its own
        threading.Thread(target=self._loop, name="wall-clock", daemon=True).start()

    def _loop(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    self._sleeping_until = math.inf
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._sleeping_until = self._deadline
                    self._cond.wait(remaining)
                    continue
                self._engine.increment_epoch()
                self._deadline = None

    @contextlib.contextmanager
    def armed(self, wall_seconds: float) -> Iterator[None]:
        """Arm for one run. The thread is woken only when it would otherwise sleep past the new
        deadline, so back-to-back runs cost no thread wake-ups (dispatch latency)."""
        with self._cond:
            self._deadline = time.monotonic() + wall_seconds
            if self._deadline < self._sleeping_until:
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._deadline = None  # the thread notices when it next wakes


def take_pipes() -> tuple[int, int]:
    """Move the frame pipes off fds 0 and 1, so a stray print (ours or a library's) cannot corrupt them."""
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return fd_in, fd_out


def serve(cache_dir: str | None) -> int:
    engine = make_engine()
    cpu_clock = CpuClock(engine)  # first: every thread started later inherits the signal mask it needs
    # The host made the cwd (on tmpfs) and removes it even when it has to kill this process.
    scratch = Path.cwd()
    runner = GuestRunner(engine, ModuleCache(engine, cache_dir), scratch)
    clock = WallClock(engine)
    decoder = msgspec.msgpack.Decoder(Request)
    fd_in, fd_out = take_pipes()
    write_frame(fd_out, Ready(os.getpid(), engine_fingerprint()))
    while True:
        try:
            req = decoder.decode(read_frame(fd_in))
        except FrameError:
            return 0  # the host closed the pipe: shut down
        file_cap = min(MAX_FILE_BYTES, max(req.max_output_bytes, req.max_log_bytes) + 1)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_cap, MAX_FILE_BYTES))
        if req.module is not None:
            # Compiling is not the guest's time: the host starts the wall clock on this frame.
            loaded = runner.load(req)
            write_frame(fd_out, loaded)
            if loaded.outcome != "loaded":
                continue
        cpu_clock.arm(req.cpu_seconds)
        try:
            with clock.armed(req.wall_seconds):
                resp: Response = runner.run(req)
        finally:
            cpu_over = cpu_clock.disarm()
        resp.cpu_over = cpu_over
        write_frame(fd_out, resp)


def validate(wasm: bytes, engine: wasmtime.Engine, cpu_clock: CpuClock) -> str | None:
    """The reason ``wasm`` is refused, or None. Compiles, links and instantiates it (start function
    included) under fuel, the CPU clock and store limits, without calling ``_start``."""
    over = False
    try:
        module = compile_module(engine, wasm)
        check_module(module)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        HttpBridge().define(linker)  # as a run links it; a start function's request is refused: no broker
        pre = linker.instantiate_pre(module)
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        store_limits(store, VALIDATE_MEMORY_BYTES)
        store.set_fuel(VALIDATE_FUEL)
        store.set_epoch_deadline(1)  # only the CPU clock advances the epoch here
        cpu_clock.arm(VALIDATE_CPU_SECONDS)  # not before: compiling is not the start function's CPU
        try:
            pre.instantiate(store)
        finally:
            over = cpu_clock.disarm()
    except ModuleRefused as exc:
        return str(exc)
    except wasmtime.Trap as exc:
        if over:
            return f"start function trapped: it used over {VALIDATE_CPU_SECONDS:g} CPU seconds (host calls included)"
        return f"start function trapped: {exc.message}"
    except wasmtime.WasmtimeError as exc:
        return str(exc)
    return None


def check_one() -> int:
    """``--validate``: one module in, one verdict out."""
    engine = make_engine()
    cpu_clock = CpuClock(engine)  # before any other thread, as in serve()
    fd_in, fd_out = take_pipes()
    write_frame(fd_out, Ready(os.getpid(), engine_fingerprint()))
    try:
        wasm = read_frame(fd_in)
    except FrameError:
        return 0  # the host gave up before sending it
    write_frame(fd_out, Verdict(validate(wasm, engine, cpu_clock)))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rh_sandbox.wasm._worker")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--data-mb", type=int, default=4096)
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--confine", type=json.loads, default=None, help="JSON: Landlock rules, seccomp filter")
    args = parser.parse_args(argv)
    limit_self(args.data_mb)
    if args.confine:
        confine_self(args.confine)
    if args.validate:
        return check_one()
    return serve(args.cache_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
