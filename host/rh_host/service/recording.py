"""Idempotent runs: a backend wrapper that stores each run as it ends and replays stored ones.

A run is keyed by (batch, plugin version, input digest), the digest being SHA-256 of the exact
invocation bytes (batch, metadata, config). When a batch is redelivered after a crash, runs that
already ended are read back instead of run again; the others run (at least once, never lost).
Secret values, in their common encodings, are redacted from everything stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgspec

from rh_host.service.redaction import redact_struct
from rh_host.service.store import Store
from rh_sandbox import Backend, RunResult, RunSpec, SandboxError

__all__ = ["RecordingBackend", "ShuttingDown", "redact_result"]

_encode = msgspec.json.encode
_decode_result = msgspec.json.Decoder(RunResult).decode


def redact_result(result: RunResult, secret_values: list[str]) -> RunResult:
    """Replace every secret value, in any of its common encodings, wherever it appears (logs, errors,
    output, egress records) with ``[redacted]``."""
    return redact_struct(result, secret_values)


class ShuttingDown(BaseException):
    """The service is stopping: abandon the batch unrecorded; the next start resumes it.

    A BaseException, like ``asyncio.CancelledError``: the pipeline turns every ``Exception`` of a run into
    a crashed run, and a run cut short by our own shutdown must not be stored as the plugin's failure."""


class RecordingBackend:
    """Wraps the shared dispatcher for one batch; ``version_ids`` maps plugin name -> version id."""

    def __init__(
        self,
        inner: Backend,
        store: Store,
        batch_pk: int,
        version_ids: dict[str, int],
        secret_values: list[str],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._stopping = stopping
        self._inner = inner
        self._store = store
        self._batch_pk = batch_pk
        self._version_ids = version_ids
        self._secrets = secret_values
        self.replayed: list[str] = []  # plugins whose stored run was reused

    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        version_id = self._version_ids[spec.name]
        digest = hashlib.sha256(payload).hexdigest()
        stored = self._store.stored_run(self._batch_pk, version_id, digest)
        if stored is not None:
            self.replayed.append(spec.name)
            return _decode_result(stored)
        if self._stopping():
            raise ShuttingDown(spec.name)
        try:
            result = self._inner.run(spec, payload)
        except SandboxError:
            if self._stopping():  # the dispatcher was closed under us
                raise ShuttingDown(spec.name) from None
            raise  # the pipeline reports it as host_error; not stored, so a redelivery runs it again
        if self._stopping() and result.status.value in ("crashed", "timeout"):
            raise ShuttingDown(spec.name)  # killed by our own shutdown, not the plugin's doing
        result = redact_result(result, self._secrets)
        self._store.save_run(
            self._batch_pk, version_id, digest, spec.name, result.status.value, _encode(result).decode()
        )
        return result

    def close(self) -> None:
        """The shared dispatcher outlives a batch; the service closes it."""
