"""validate_module: refuse a malformed or hostile module at upload time, in bounded time and memory.

The check runs in a one-shot worker (``--validate``) under RLIMIT_DATA and a wall-clock kill, because
compiling is where hostile modules bite: a million nested blocks took 4 s and 1 GB to compile here.
It is started by the same launcher as the runs' workers, so at the strict level an upload is compiled
and its start function run in a strict sandbox as its group's own uid, never as the host's.
"""

from __future__ import annotations

import os
import time

import msgspec

from rh_sandbox.errors import WasmModuleError
from rh_sandbox.guest.wire import frame
from rh_sandbox.wasm._engine import MAX_MODULE_BYTES
from rh_sandbox.wasm._frames import Verdict
from rh_sandbox.wasm._pool import PlainWorkers, WorkerDied, WorkerLauncher, WorkerProcess, WorkerTimeout

__all__ = ["WasmModuleError", "validate_module"]

_verdict = msgspec.msgpack.Decoder(Verdict)
_OUT_OF_MEMORY = ("memory allocation", "SIGABRT", "SIGKILL", "SIGSEGV")


def validate_module(
    path: str | os.PathLike[str],
    *,
    launcher: WorkerLauncher | None = None,
    group: str = "validate",
    name: str | None = None,
    timeout_seconds: float = 20.0,
    memory_mb: int = 1024,
) -> None:
    """Raise :class:`WasmModuleError` unless ``path`` is a WASI command module this host will run:
    valid, within size, importing only WASI (and rh-host's HTTP functions), exporting ``_start`` and
    ``memory``, instantiable under the default limits with a start function (if any) that neither
    traps nor spins.

    launcher: where the check runs (default: a worker as the host's uid, the basic level; a
    ``WasmBackend`` passes its own, see ``WasmBackend.validate``); group: whose sandbox it is;
    name: how messages call the module (default: ``path``). ``timeout_seconds`` counts from the
    worker's start-up to its verdict. A worker that cannot start raises ``SandboxError``: the host's
    problem, not the module's.
    """
    label = name or os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_MODULE_BYTES:
            raise WasmModuleError(f"{label}: module is {size} bytes, the limit is {MAX_MODULE_BYTES}")
        with open(path, "rb") as f:
            wasm = f.read()
    except OSError as exc:
        raise WasmModuleError(f"{label}: cannot read module: {exc.strerror or exc}") from None
    deadline = time.monotonic() + timeout_seconds
    checker = WorkerProcess(launcher or PlainWorkers(), group, check_mb=memory_mb)
    try:
        checker.send(frame(wasm))
        reason = _verdict.decode(checker.receive(deadline)).reason
    except WorkerTimeout:
        raise WasmModuleError(f"{label}: checking the module took longer than {timeout_seconds:g} s") from None
    except WorkerDied as exc:
        tail = checker.error_tail(300)
        if any(sign in f"{exc} {tail}" for sign in _OUT_OF_MEMORY):
            raise WasmModuleError(
                f"{label}: checking the module exceeded its resources ({exc}); "
                f"it is too large or too deeply nested to compile within {memory_mb} MiB"
            ) from None
        raise WasmModuleError(f"{label}: module check failed ({exc}): {tail[-200:]!r}") from None
    except msgspec.DecodeError as exc:
        raise WasmModuleError(f"{label}: module check failed: the checker sent a bad frame ({exc})") from None
    finally:
        checker.kill()
    if reason is not None:
        raise WasmModuleError(f"{label}: {reason}")
