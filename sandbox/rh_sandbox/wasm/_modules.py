"""Host side: read a plugin's module file once and remember its hash until the file changes."""

from __future__ import annotations

import hashlib
import os
import threading

from rh_sandbox.errors import SandboxError
from rh_sandbox.wasm._engine import MAX_MODULE_BYTES

__all__ = ["ModuleFiles", "ModuleTooLarge"]


class ModuleTooLarge(SandboxError, ValueError):
    """A module file is larger than the backend accepts."""


class ModuleFiles:
    """(sha256, bytes) per path, re-read when size, mtime or inode change. Thread-safe."""

    def __init__(self, max_bytes: int = MAX_MODULE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, int, int], str, bytes]] = {}

    def get(self, path: str) -> tuple[str, bytes]:
        """Raises OSError when unreadable, ModuleTooLarge over the size limit."""
        st = os.stat(path)
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            entry = self._entries.get(path)
        if entry is not None and entry[0] == key:
            return entry[1], entry[2]
        if st.st_size > self._max_bytes:
            raise ModuleTooLarge(f"module is {st.st_size} bytes, the limit is {self._max_bytes}")
        with open(path, "rb") as f:
            data = f.read(self._max_bytes + 1)
        if len(data) > self._max_bytes:
            raise ModuleTooLarge(f"module is over the limit of {self._max_bytes} bytes")
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._entries[path] = (key, digest, data)
        return digest, data
