"""This process as a node of a deployment: an id that no other process, on any machine, ever has, and a
lock file in the data directory held for the process's life.

The lock tells the processes that share a data directory (the same machine) which of their peers are
dead: the kernel drops an ``flock`` when its holder dies, however it died. So a restart on the same
data directory gives a crashed predecessor's batches back at once, while a node on another machine
(another data directory) is never judged this way: its batches wait for their leases to end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
from pathlib import Path

__all__ = ["Node"]

_SUFFIX = ".lock"


class Node:
    def __init__(self, data_dir: Path, role: str) -> None:
        self.role = role
        self.id = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._dir = data_dir / "nodes"
        self._dir.mkdir(mode=0o700, exist_ok=True)
        self._path = self._dir / f"{_file_name(self.id)}{_SUFFIX}"
        # locked under a temporary name, then renamed: a peer never sees this node's file unlocked
        staging = self._dir / f".{self._path.name}.tmp"
        self._fd: int | None = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(self._fd, self.id.encode())
        os.rename(staging, self._path)

    def dead_peers(self) -> list[str]:
        """The ids of nodes that used this data directory and died; their lock files are removed."""
        dead = []
        for path in self._dir.glob(f"*{_SUFFIX}"):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:  # another starting node took it first
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # alive
                os.close(fd)
                continue
            try:
                node_id = os.read(fd, 256).decode(errors="replace")
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            finally:
                os.close(fd)
            if node_id:
                dead.append(node_id)
        return dead

    def close(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        os.close(self._fd)
        self._fd = None


def _file_name(node_id: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in node_id)
