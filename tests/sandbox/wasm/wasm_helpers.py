"""Helpers shared by the wasm backend tests (a module of its own: `conftest` names clash across dirs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rh_sandbox.types import RunResult

RunWat = Callable[..., RunResult]


def write_plugin(directory: Path, source: str | bytes, name: str = "handler.wat") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if isinstance(source, str):
        path.write_text(source)
    else:
        path.write_bytes(source)
    return path
