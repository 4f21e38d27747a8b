"""WasmBackend: the Backend for ``runtime = "wasm"`` plugins.

Per run: look the module up (hash memoised per file), borrow a worker of the run's group, send one
framed request (the module bytes only the first time that worker meets the module), wait at most the
wall limit plus a grace period, classify. The worker enforces fuel, epochs, store limits and output
caps; the host enforces the wall clock by killing a worker that does not answer in time (a guest
blocked in ``poll_oneoff`` or in an HTTP request is out of the epochs' reach). A plugin with network
grants gets the run's own egress broker, reached by the worker's HTTP host functions (``_net``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import msgspec

from rh_sandbox.egress.run import EgressSettings, RunEgress, run_with_egress
from rh_sandbox.guest.wire import frame
from rh_sandbox.types import IsolationLevel, RunResult, RunSpec, SandboxError
from rh_sandbox.wasm._classify import classify, parse_logs
from rh_sandbox.wasm._engine import fuel_for
from rh_sandbox.wasm._frames import Request, Response
from rh_sandbox.wasm._modules import ModuleFiles, ModuleTooLarge
from rh_sandbox.wasm._pool import (
    CommandWrapper,
    PlainWorkers,
    WorkerDied,
    WorkerLauncher,
    WorkerPool,
    WorkerProcess,
    WorkerTimeout,
)
from rh_sandbox.wasm._validate import validate_module
from rh_sdk.protocol import RunStatus, Usage

__all__ = ["WasmBackend"]

_encoder = msgspec.msgpack.Encoder()
_response_decoder = msgspec.msgpack.Decoder(Response)


class WasmBackend:
    """Runs WASI command modules in a pool of long-lived, per-group worker processes. Thread-safe.

    cache_dir: where compiled modules are kept across runs and restarts (None: compile once per worker).
    workers: the most worker processes alive at once (each runs one guest at a time).
    sandbox: starts each worker in a sandbox of its group's (``StrictWorkers``: the strict level);
    it keeps the compiled-module caches and the worker's data limit itself, so ``cache_dir``,
    ``wrap_command`` and ``worker_data_mb`` go with the default (basic) workers only.
    wrap_command: turns the worker argv into the argv actually executed (a debugger, ``env -i``).
    worker_data_mb: RLIMIT_DATA of a worker, a backstop above every plugin's memory_mb.
    kill_grace_seconds: how long after the wall limit a silent worker is killed.
    compile_seconds: extra time allowed when a worker first meets a module (compile or cache load).
    concurrent_checks: the most module checks (``validate``) at once; more wait their turn. Each may
    take its memory_mb (1 GiB) to compile a hostile module: uploads must not add up to the machine's.
    checks_per_group: the most of them for one group at once, so that one group uploading
    many modules does not hold every turn while the others' uploads wait.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        workers: int = 2,
        *,
        sandbox: WorkerLauncher | None = None,
        wrap_command: CommandWrapper | None = None,
        worker_data_mb: int = 4096,
        kill_grace_seconds: float = 0.25,
        compile_seconds: float = 30.0,
        egress: EgressSettings | None = None,
        concurrent_checks: int = 2,
        checks_per_group: int = 1,
    ) -> None:
        if concurrent_checks < 1 or checks_per_group < 1:
            raise ValueError("concurrent_checks and checks_per_group must be at least 1")
        if sandbox is not None and (cache_dir is not None or wrap_command is not None):
            raise ValueError("a sandboxed WasmBackend takes its cache dir and command from the sandbox")
        if sandbox is None:
            cache = os.fspath(cache_dir) if cache_dir is not None else None
            if cache is not None:
                os.makedirs(cache, mode=0o700, exist_ok=True)
            sandbox = PlainWorkers(cache, worker_data_mb, wrap_command)
        self._launcher = sandbox
        self.isolation = IsolationLevel.STRICT if sandbox.sandboxed else IsolationLevel.BASIC
        self._grace = kill_grace_seconds
        self._compile_seconds = compile_seconds
        self._egress = egress or EgressSettings()  # the default permits no grant
        self._modules = ModuleFiles()
        # bwrap's --die-with-parent fires when the thread that started it ends: start every worker
        # from a thread of this backend's, never from a caller's (a pipeline's threads are short-lived)
        self._starter = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rh-wasm-starter")
        self._pool = WorkerPool(self._start_worker, workers)
        self._checks = threading.BoundedSemaphore(concurrent_checks)
        self._checks_per_group = checks_per_group
        self._group_turns = threading.Condition()
        self._checking: Counter[str] = Counter()  # per group: checks past its turn (running or queued)

    def _start_worker(self, group: str) -> WorkerProcess:
        return self._starter.submit(WorkerProcess, self._launcher, group).result()

    def warm(self, group: str = "default", count: int = 1) -> None:
        """Start workers before the first run, so it does not pay for interpreter start-up."""
        self._pool.warm(group, count)

    def validate(
        self,
        path: str | os.PathLike[str],
        *,
        group: str,
        name: str | None = None,
        timeout_seconds: float = 20.0,
        memory_mb: int = 1024,
    ) -> None:
        """Check a module as :func:`validate_module` does, where ``group``'s runs would meet it: at the
        strict level in a strict sandbox as the group's own uid (an upload is its group's code).
        ``timeout_seconds`` starts when the check does, after any wait for a turn (the group's, then
        the backend's)."""
        with self._group_turns:
            self._group_turns.wait_for(lambda: self._checking[group] < self._checks_per_group)
            self._checking[group] += 1
        try:
            with self._checks:
                validate_module(
                    path,
                    launcher=self._launcher,
                    group=group,
                    name=name,
                    timeout_seconds=timeout_seconds,
                    memory_mb=memory_mb,
                )
        finally:
            with self._group_turns:
                self._checking[group] -= 1
                if not self._checking[group]:
                    del self._checking[group]
                self._group_turns.notify_all()

    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        if spec.runtime != "wasm":
            raise SandboxError(f"WasmBackend cannot run runtime {spec.runtime!r}")
        if os.path.isabs(spec.entry) or ".." in spec.entry.replace("\\", "/").split("/"):
            return RunResult(
                status=RunStatus.PROTOCOL_ERROR,
                error=f"module refused: entry {spec.entry!r} must be a path inside the plugin directory",
            )
        path = os.path.join(spec.plugin_dir, spec.entry)
        try:
            module_hash, wasm = self._modules.get(path)
        except (OSError, ModuleTooLarge) as exc:
            return RunResult(status=RunStatus.PROTOCOL_ERROR, error=f"module refused: {path}: {exc}")

        worker = self._pool.acquire(spec.group)
        if not spec.allowed_hosts:
            return self._run(spec, payload, worker, module_hash, wasm, None)
        started_run = False

        def run(egress: RunEgress) -> RunResult:
            nonlocal started_run
            started_run = True
            return self._run(spec, payload, worker, module_hash, wasm, egress)

        try:  # the worker asks this run's broker for each connection, and only this worker may
            return run_with_egress(spec.allowed_hosts, self._egress, worker.owns, self._launcher.isolation, run)
        finally:
            if not started_run:  # refused, or the broker did not start: _run would have released it
                self._pool.release(worker, True)

    def _run(
        self,
        spec: RunSpec,
        payload: bytes,
        worker: WorkerProcess,
        module_hash: str,
        wasm: bytes,
        egress: RunEgress | None,
    ) -> RunResult:
        limits = spec.limits
        started = time.perf_counter()  # a worker's start-up is the host's cost, not the run's
        first = module_hash not in worker.known
        request = Request(
            module_hash=module_hash,
            module=wasm if first else None,
            payload=payload,
            memory_bytes=limits.memory_mb * 1024 * 1024,
            fuel=fuel_for(limits.cpu_seconds),
            wall_seconds=limits.wall_seconds,
            max_output_bytes=limits.max_output_kb * 1024,
            max_log_bytes=limits.max_log_kb * 1024,
            egress_socket=str(egress.setup.socket_path) if egress is not None and egress.setup else None,
            grants=list(spec.allowed_hosts),
            cpu_seconds=limits.cpu_seconds,
        )
        body = _encoder.encode(request)
        healthy = False
        compiling = first
        try:
            worker.send(frame(body))
            resp = None
            if first:  # the worker answers "loaded" (or "refused") before it starts the guest
                resp = _response_decoder.decode(worker.receive(time.monotonic() + self._compile_seconds))
                compiling = False
            if resp is None or resp.outcome == "loaded":
                deadline = time.monotonic() + limits.wall_seconds + self._grace
                resp = _response_decoder.decode(worker.receive(deadline))
            if resp.outcome != "refused":
                worker.known.add(module_hash)
            healthy = True
        except WorkerTimeout:
            if compiling:
                error = f"module refused: compiling took longer than {self._compile_seconds:g} s"
                return self._ended(started, RunStatus.PROTOCOL_ERROR, error)
            error = f"wall-clock limit of {limits.wall_seconds:g} s reached"
            return self._ended(started, RunStatus.TIMEOUT, error)
        except WorkerDied as exc:
            tail = worker.error_tail()
            return self._ended(started, RunStatus.CRASHED, f"wasm {exc}" + (f": {tail}" if tail else ""))
        except msgspec.DecodeError as exc:
            return self._ended(started, RunStatus.CRASHED, f"wasm worker sent a bad frame: {exc}")
        finally:
            self._pool.release(worker, healthy)

        status, reply, error = classify(
            resp, spec.encoding, max_output_kb=limits.max_output_kb, max_log_kb=limits.max_log_kb
        )
        usage = Usage(
            wall_ms=(time.perf_counter() - started) * 1000.0,
            cpu_ms=resp.cpu_ms,
            peak_rss_kb=resp.memory_bytes // 1024,
            fuel=None if resp.trap_code == "INTERRUPT" else resp.fuel_used,  # wasmtime loses the count then
        )
        return RunResult(
            status=status,
            reply=reply,
            error=error,
            logs=parse_logs(resp.stderr, resp.stderr_over, max_log_kb=limits.max_log_kb),
            usage=usage,
            isolation=self._launcher.isolation,
            exit_code=resp.exit_code if resp.outcome == "exit" else None,
        )

    def _ended(self, started: float, status: RunStatus, error: str) -> RunResult:
        """A run whose worker was lost: no reply, no logs, only the host's own measurements."""
        usage = Usage(wall_ms=(time.perf_counter() - started) * 1000.0)
        return RunResult(status=status, error=error, usage=usage, isolation=self._launcher.isolation)

    def close(self) -> None:
        """Kill every worker; runs in progress end as crashed."""
        self._pool.close()
        self._starter.shutdown(wait=True)
        self._launcher.close()

    def __enter__(self) -> WasmBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
