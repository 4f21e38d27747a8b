"""rh_sdk's public surface is pinned; the seed's import path is an installed alias of it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import rh_sdk
from rh_sdk import protocol


def test_all_is_pinned() -> None:
    assert rh_sdk.__all__ == [
        "DEFAULT_PRIORITY",
        "PROTOCOL_VERSION",
        "HandlerOutcome",
        "HandlerRegistry",
        "ResultHandler",
        "RunStatus",
        "get_registry",
    ]
    for name in rh_sdk.__all__:
        assert hasattr(rh_sdk, name), name


def test_protocol_all_is_pinned() -> None:
    assert sorted(protocol.__all__) == sorted(
        [
            "PROTOCOL_VERSION", "Encoding", "GuestInvocation", "Invocation", "LogRecord", "Reply", "ResultLine",
            "ResultResponse", "RunStatus", "Usage", "decode_reply", "encode_invocation", "encode_reply",
            "invocation_decoder", "json_schema",
        ]
    )  # fmt: skip
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, cwd="/"
    )


def test_importing_rh_sdk_creates_no_core_module_but_the_alias_is_installed() -> None:
    proc = _python(
        """
        import sys
        import rh_sdk, rh_sdk.protocol, rh_sdk.runner
        assert not [m for m in sys.modules if m == "core" or m.startswith("core.")], "core leaked"
        import core.result_handlers.base as base
        assert base.__all__ == [
            "DEFAULT_PRIORITY", "HandlerOutcome", "HandlerRegistry", "ResultHandler", "get_registry"
        ]
        assert base.get_registry is rh_sdk.get_registry
        print("installed")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "installed"


def test_the_seed_alias_resolves_to_rh_sdk_once_installed() -> None:
    proc = _python(
        """
        from rh_sdk.runner import install_seed_alias
        import rh_sdk
        install_seed_alias()
        from core.result_handlers.base import ResultHandler, get_registry, HandlerRegistry, DEFAULT_PRIORITY
        assert ResultHandler is rh_sdk.ResultHandler
        assert get_registry is rh_sdk.get_registry and HandlerRegistry is rh_sdk.HandlerRegistry
        assert DEFAULT_PRIORITY == 100
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_rh_sdk_imports_neither_sandbox_nor_host(repo_root: Path) -> None:
    offenders = [
        str(path.relative_to(repo_root))
        for path in (repo_root / "sdk" / "rh_sdk").rglob("*.py")
        if "rh_sandbox" in path.read_text() or "rh_host" in path.read_text()
    ]
    assert offenders == []
