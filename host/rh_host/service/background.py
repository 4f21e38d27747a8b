"""The service's background threads (housekeeping, the heartbeat, the queue listener) share one life:
a daemon thread started once, asked to stop through an event its loop waits on, and joined within a
bound at close."""

from __future__ import annotations

import threading

__all__ = ["BackgroundThread"]


class BackgroundThread:
    """Runs :meth:`_loop` in a daemon thread named ``thread_name`` from :meth:`start` until :meth:`close`;
    the loop waits on ``self._stopping`` between rounds."""

    thread_name = "rh-background"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        raise NotImplementedError
