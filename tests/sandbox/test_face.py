"""rh_sandbox's face: the names the host may use, pinned, and nothing outside the layer reaching past it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rh_sandbox

ROOT = Path(__file__).resolve().parents[2]

FACE = [
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


def test_all_is_pinned() -> None:
    assert rh_sandbox.__all__ == FACE


def test_every_name_of_the_face_resolves() -> None:
    for name in rh_sandbox.__all__:
        assert getattr(rh_sandbox, name) is not None, name
    assert callable(rh_sandbox.probe)  # the function, not the submodule of the same name


def test_importing_the_face_loads_no_backend() -> None:
    code = "import sys, rh_sandbox; print(sorted(m for m in sys.modules if m in ('wasmtime', 'rh_sandbox.factory')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_exception_is_a_sandbox_error() -> None:
    from rh_sandbox.wasm._frames import FrameError
    from rh_sandbox.wasm._guest import ModuleRefused
    from rh_sandbox.wasm._modules import ModuleTooLarge
    from rh_sandbox.wasm._pool import WorkerDied, WorkerTimeout

    for error in (rh_sandbox.GrantError, rh_sandbox.WasmModuleError, ModuleTooLarge):
        assert issubclass(error, rh_sandbox.SandboxError) and issubclass(error, ValueError)
    for error in (FrameError, ModuleRefused, WorkerDied, WorkerTimeout):
        assert issubclass(error, rh_sandbox.SandboxError)


def _submodule_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rh_sandbox."):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module}")
        elif isinstance(node, ast.Import):
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: import {a.name}" for a in node.names if "." in a.name
                      and a.name.startswith("rh_sandbox.")]  # fmt: skip
    return found


def test_the_host_imports_the_face_only() -> None:
    """rh_host and the tests of other layers use ``rh_sandbox``, never one of its submodules."""
    paths = [*(ROOT / "host").rglob("*.py"), *(p for p in (ROOT / "tests").rglob("*.py") if "sandbox" not in p.parts)]
    assert [hit for path in paths for hit in _submodule_imports(path)] == []
