"""rh_sandbox: run one handler invocation in isolation and report how it ended.

Knows nothing of tenants, storage or HTTP. Backends: :mod:`rh_sandbox.process` (Python handlers
in a sandboxed subprocess) and :mod:`rh_sandbox.wasm` (WebAssembly under wasmtime).
"""

from rh_sandbox.types import (
    Backend,
    IsolationLevel,
    Limits,
    RunResult,
    RunSpec,
    RunStatus,
    Runtime,
    SandboxError,
    Usage,
)

__all__ = [
    "Backend",
    "IsolationLevel",
    "Limits",
    "RunResult",
    "RunSpec",
    "RunStatus",
    "Runtime",
    "SandboxError",
    "Usage",
]
