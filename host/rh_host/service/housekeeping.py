"""Housekeeping: retention (finished batches older than ``retention_days`` are purged with their runs
and outcomes) and garbage collection of artifacts no plugin version references: this node's
unpacked copies, and the archives in the database an hour after their last upload.

One daemon thread runs a round at start and every ``housekeeping_seconds``. A purge deletes in
short transactions of a few hundred batches, oldest first, through the index on ``finished_at``, so
it never holds the database for long; a round with nothing to do costs one indexed query and one
listing of the artifact directory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rh_host.service.artifacts import ArtifactStore
from rh_host.service.background import BackgroundThread
from rh_host.service.store import Store

__all__ = ["Housekeeper", "purge_expired"]

_log = logging.getLogger("rh.service.housekeeping")
_PURGE_CHUNK = 200
_DAY_SECONDS = 86_400.0
_ARCHIVE_GRACE_SECONDS = 3_600.0  # an archive stored with a version deleted at once is kept this long


def purge_expired(store: Store, retention_days: float, now: float | None = None) -> int:
    """Purge every batch finished more than ``retention_days`` ago; the number purged."""
    before = (time.time() if now is None else now) - retention_days * _DAY_SECONDS
    total = 0
    while True:
        purged = store.purge_finished(before, _PURGE_CHUNK)
        total += purged
        if purged < _PURGE_CHUNK:
            return total


class Housekeeper(BackgroundThread):
    thread_name = "rh-housekeeping"

    def __init__(
        self, store: Store, artifacts: ArtifactStore, *, retention_days: float | None, interval_seconds: float
    ) -> None:
        super().__init__()
        self._store = store
        self._artifacts = artifacts
        self._retention_days = retention_days
        self._interval = interval_seconds

    def round(self) -> tuple[int, int]:
        """One round now: (batches purged, artifacts removed)."""
        purged = 0
        if self._retention_days is not None:
            purged = purge_expired(self._store, self._retention_days)
            if purged:
                _log.info("purged %d batch(es) finished more than %g days ago", purged, self._retention_days)
        archives = self._store.purge_unreferenced_archives(time.time() - _ARCHIVE_GRACE_SECONDS)
        if archives:
            _log.info("removed %d plugin archive(s) no plugin version references from the database", archives)
        return purged, self._artifacts.collect(self._store.referenced_digests)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            _guarded(self.round)
            self._stopping.wait(self._interval)


def _guarded(step: Callable[[], object]) -> None:
    try:
        step()
    except Exception:  # the database away for a moment: the next round tries again
        _log.exception("housekeeping round failed; retrying at the next one")
