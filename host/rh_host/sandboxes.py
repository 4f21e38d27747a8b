"""Build the sandbox the host runs plugins in: one dispatcher, a backend per runtime."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rh_sandbox.dispatch import Dispatcher
from rh_sandbox.egress import EgressSettings
from rh_sandbox.types import Backend, SandboxError
from rh_sandbox.uids import SandboxUids, UidRange

__all__ = ["ISOLATION_CHOICES", "check_python_sandbox", "default_wasm_cache_dir", "make_dispatcher"]

ISOLATION_CHOICES = ("auto", "basic", "strict")
_log = logging.getLogger("rh.host")


def _without_strict(isolation: str) -> None:
    """Strict isolation is not built into this installation: refuse ``strict``, warn for ``auto``."""
    if isolation == "strict":
        raise SandboxError("strict isolation is not available in this installation")
    if isolation == "auto":
        _log.warning("isolation degraded to 'basic': strict isolation is not available")


def _python_backend(isolation: str, egress: EgressSettings | None, uids: SandboxUids) -> Backend:
    try:
        from rh_sandbox.isolation import make_python_backend
    except ImportError:
        from rh_sandbox.process import ProcessBackend

        _without_strict(isolation)
        return ProcessBackend()
    return make_python_backend(isolation, egress=egress, uids=uids)


def check_python_sandbox(isolation: str, sandbox_uids: UidRange | None = None) -> None:
    """Raise SandboxError now for what the first Python run would refuse (``strict`` unavailable, an
    overlapping uid range), so that a long-running host refuses to start instead."""
    try:
        from rh_sandbox.isolation import check_isolation
    except ImportError:
        _without_strict(isolation)
        return
    check_isolation(isolation, uids=SandboxUids.over(sandbox_uids))


def default_wasm_cache_dir() -> Path:
    """Compiled modules survive across runs here (compiling the Zig sample alone takes ~70 ms)."""
    if os.geteuid() == 0:
        return Path("/var/lib/rh-host/wasm-cache")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "rh-host" / "wasm-cache"


def _wasm_backend(isolation: str, cache_dir: Path | None, egress: EgressSettings | None, uids: SandboxUids) -> Backend:
    cache_dir = cache_dir or default_wasm_cache_dir()
    try:
        from rh_sandbox.isolation import make_wasm_backend
    except ImportError:
        from rh_sandbox.wasm import WasmBackend

        _without_strict(isolation)
        return WasmBackend(cache_dir=cache_dir, egress=egress)
    return make_wasm_backend(isolation, cache_dir=cache_dir, egress=egress, uids=uids)


def make_dispatcher(
    isolation: str = "auto",
    wasm_cache_dir: Path | None = None,
    egress: EgressSettings | None = None,
    sandbox_uids: UidRange | None = None,
) -> Dispatcher:
    """``egress``: the operator's policy for plugins' network grants (default: none permitted);
    ``sandbox_uids``: the range each tenant's own sandbox uid comes from (default: rh_sandbox's).
    Both runtimes share one uid allocator: a tenant's Python and WASM runs have the same uid."""
    uids = SandboxUids.over(sandbox_uids)
    return Dispatcher(
        {
            "python": lambda: _python_backend(isolation, egress, uids),
            "wasm": lambda: _wasm_backend(isolation, wasm_cache_dir, egress, uids),
        }
    )
