"""Helpers shared by the wasm backend tests (a module of its own: `conftest` names clash across dirs)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rh_sandbox.probe import Probe
from rh_sandbox.types import RunResult
from rh_sandbox.wasm import StrictWorkers, WasmBackend

RunWat = Callable[..., RunResult]


def write_plugin(directory: Path, source: str | bytes, name: str = "handler.wat") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if isinstance(source, str):
        path.write_text(source)
    else:
        path.write_bytes(source)
    return path


@contextlib.contextmanager
def wasm_backend(level: str, machine: Probe, **kwargs: Any) -> Iterator[WasmBackend]:
    """A WasmBackend at ``level``: ``basic`` (workers as the host) or ``strict`` (each tenant's workers
    in a strict sandbox as its own uid, with a cache dir of its own under ``cache_dir``)."""
    if level == "basic":
        with WasmBackend(**kwargs) as backend:
            yield backend
        return
    if not machine.strict_sandbox_works:
        pytest.skip(f"strict sandbox unavailable here: {machine.strict_problem}")
    cache = kwargs.pop("cache_dir", None)
    if cache is not None:  # the tenants' uids must be able to reach their dirs beneath it
        cache = tempfile.mkdtemp(prefix="rh-wasm-cache-", dir="/tmp")
    try:
        with WasmBackend(sandbox=StrictWorkers(cache_dir=cache), **kwargs) as backend:
            yield backend
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
