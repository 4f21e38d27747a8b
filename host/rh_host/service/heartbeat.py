"""A node's heartbeat, three times per lease: its row in ``nodes`` says it is alive, and a worker node
renews the leases of the batches it holds.

A beat that fails (the database away for a moment) is retried at the next one; if a worker stays
cut off for longer than a lease, other nodes take its batches over and its own finish is refused
(``Finish.LEASE_LOST``), so the batch still gets exactly one outcome.
"""

from __future__ import annotations

import logging

from rh_host.service.background import BackgroundThread
from rh_host.service.claims import Claims

__all__ = ["Heartbeat"]

_log = logging.getLogger("rh.service.heartbeat")
_BEATS_PER_LEASE = 3


class Heartbeat(BackgroundThread):
    thread_name = "rh-heartbeat"

    def __init__(self, claims: Claims, role: str, *, renews_leases: bool) -> None:
        super().__init__()
        self._claims = claims
        self._role = role
        self._renews_leases = renews_leases

    def start(self) -> None:
        self.beat()  # the node is in the cluster view from its start
        super().start()

    def beat(self) -> None:
        self._claims.beat(self._role)
        if self._renews_leases:
            self._claims.renew()

    def _loop(self) -> None:
        interval = self._claims.lease_seconds / _BEATS_PER_LEASE
        while not self._stopping.wait(interval):
            try:
                self.beat()
            except Exception:
                _log.exception("heartbeat failed (this node's leases are not renewed); retrying in %.1f s", interval)
