"""One service per data dir: a second ``serve`` (or ``serve --migrate-only``) on the same directory
would empty the first one's upload staging at its start and share its SQLite file and spool. The lock
is an advisory ``flock`` on ``serve.lock``, held for the service's life and released by the kernel
when the process ends, however it ends: nothing stale to clean up after a crash."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from rh_host.errors import HostError

__all__ = ["DataDirInUse", "DataDirLock"]

LOCK_NAME = "serve.lock"


class DataDirInUse(HostError):
    """Another live process serves from this data dir."""


class DataDirLock:
    """Held from :meth:`acquire` to :meth:`release`; the file keeps the holder's pid for the message."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        path = data_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"data dir {data_dir} is in use by another rh-host serve (pid {holder}); "
                "give each service its own --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        """Idempotent; the file stays (removing it could race a new holder's open)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
