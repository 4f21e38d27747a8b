"""rh_sandbox: run one handler invocation in isolation and report how it ended.

Knows nothing of tenants, storage or HTTP: the host passes an opaque ``group`` per run. This module
is the layer's one face; the host imports nothing else of it. The layout (docs/architecture.md):

    types, errors     the plain data of a run and the one exception root
    factory, probe    the backend for an isolation setting; what this machine offers
    classify          a finished run's exchange -> exactly one status
    dispatch          one backend per runtime behind one entry point
    python/           the Python backends (process: basic, strict: bwrap; the fork server)
    wasm/             WebAssembly under wasmtime, in (sandboxed) worker processes
    egress/           a run's network grants, mediated by the host
    linux/            host-side primitives: bwrap, cgroups, seccomp, Landlock, the guest's layout, uids
    guest/            what runs inside the sandbox, stdlib only, copied in by path
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rh_sandbox.errors import GrantError, SandboxError, WasmModuleError

# Eager, unlike the rest: the function ``probe`` must win over the submodule of the same name, which a
# later import of ``rh_sandbox.probe`` (by the factory) would otherwise bind here.
from rh_sandbox.probe import Probe, format_probe, probe, probe_dict
from rh_sandbox.types import Backend, IsolationLevel, Limits, RunResult, RunSpec, RunStatus, Runtime, Usage

if TYPE_CHECKING:
    from rh_sandbox.dispatch import Dispatcher
    from rh_sandbox.egress import EgressSettings, OperatorPolicy, check_grants, parse_grants
    from rh_sandbox.factory import (
        ISOLATION_CHOICES,
        IsolationSetting,
        check_isolation,
        default_wasm_cache_dir,
        make_dispatcher,
        make_python_backend,
        make_wasm_backend,
    )
    from rh_sandbox.linux.uids import DEFAULT_UIDS, SandboxUids, UidRange
    from rh_sandbox.python.forkserver import ForkServerBackend
    from rh_sandbox.python.process import ProcessBackend
    from rh_sandbox.python.strict import StrictProcessBackend
    from rh_sandbox.wasm import WasmBackend

__all__ = [
    "DEFAULT_UIDS",
    "ISOLATION_CHOICES",
    "Backend",
    "Dispatcher",
    "EgressSettings",
    "ForkServerBackend",
    "GrantError",
    "IsolationLevel",
    "IsolationSetting",
    "Limits",
    "OperatorPolicy",
    "Probe",
    "ProcessBackend",
    "RunResult",
    "RunSpec",
    "RunStatus",
    "Runtime",
    "SandboxError",
    "SandboxUids",
    "StrictProcessBackend",
    "UidRange",
    "Usage",
    "WasmBackend",
    "WasmModuleError",
    "check_grants",
    "check_isolation",
    "default_wasm_cache_dir",
    "format_probe",
    "make_dispatcher",
    "make_python_backend",
    "make_wasm_backend",
    "parse_grants",
    "probe",
    "probe_dict",
]


# Everything but the plain data and the errors is imported on first use: the wasm worker and other
# processes that import one submodule (which runs this file) do not pay for the backends, and a host
# without WASM plugins never loads wasmtime.
_LAZY = {
    "DEFAULT_UIDS": "rh_sandbox.linux.uids",
    "ISOLATION_CHOICES": "rh_sandbox.factory",
    "Dispatcher": "rh_sandbox.dispatch",
    "EgressSettings": "rh_sandbox.egress",
    "ForkServerBackend": "rh_sandbox.python.forkserver",
    "IsolationSetting": "rh_sandbox.factory",
    "OperatorPolicy": "rh_sandbox.egress",
    "ProcessBackend": "rh_sandbox.python.process",
    "SandboxUids": "rh_sandbox.linux.uids",
    "StrictProcessBackend": "rh_sandbox.python.strict",
    "UidRange": "rh_sandbox.linux.uids",
    "WasmBackend": "rh_sandbox.wasm",
    "check_grants": "rh_sandbox.egress",
    "check_isolation": "rh_sandbox.factory",
    "default_wasm_cache_dir": "rh_sandbox.factory",
    "make_dispatcher": "rh_sandbox.factory",
    "make_python_backend": "rh_sandbox.factory",
    "make_wasm_backend": "rh_sandbox.factory",
    "parse_grants": "rh_sandbox.egress",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rh_sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
