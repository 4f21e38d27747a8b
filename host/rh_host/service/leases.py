"""The heartbeat of a worker node: renews the leases of the batches it holds, three times per lease.

A renewal that fails (the database away for a moment) is retried at the next beat; if the node stays
cut off for longer than a lease, other nodes take its batches over and its own finish is refused
(``Finish.LEASE_LOST``), so the batch still gets exactly one outcome.
"""

from __future__ import annotations

import logging
import threading

from rh_host.service.claims import Claims

__all__ = ["LeaseKeeper"]

_log = logging.getLogger("rh.service.leases")
_BEATS_PER_LEASE = 3


class LeaseKeeper:
    def __init__(self, claims: Claims) -> None:
        self._claims = claims
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.held: set[int] = set()  # the batches held at the last beat

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rh-heartbeat", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def beat(self) -> None:
        self.held = self._claims.renew()

    def _loop(self) -> None:
        interval = self._claims.lease_seconds / _BEATS_PER_LEASE
        while not self._stopping.wait(interval):
            try:
                self.beat()
            except Exception:
                _log.exception("cannot renew this node's leases; retrying in %.1f s", interval)
