"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from rh_host.api_models import BatchAccepted, BatchView, RunDetail, RunSummary, UploadUrl
from rh_host.client._body import Results, sync_chunks, sync_form
from rh_host.client._errors import OutcomeTimeout, TransportError, api_error
from rh_host.client._requests import (
    JSONL,
    SERVER_WAIT_SECONDS,
    Backoff,
    batch_path,
    decode,
    headers_for,
    plugin_archive,
    plugin_view,
    resolve,
)
from rh_host.outcome import BatchOutcome

if TYPE_CHECKING:
    from rh_host.service.models import PluginView

__all__ = ["Client"]

BatchStatus = Literal["queued", "running", "done"]


@contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        raise TransportError(f"{url}: {type(exc).__name__}: {exc}") from exc


class Client:
    """A tenant's client of an rh-host service (one connection pool; close it, or use ``with``).

    ``url`` and ``key`` default to $RH_URL and $RH_KEY. Every refusal raises
    :class:`~rh_host.client.ApiError` carrying the API's error code and the HTTP status.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, key = resolve(url, key)
        self._http = httpx.Client(base_url=self.url, headers=headers_for(key), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with _transport_errors(self.url):
            return self._http.request(method, path, **kwargs)

    def push_plugin(self, source: Path, activate: bool = True) -> PluginView:
        """Upload a plugin (a directory with ``plugin.toml``, packed as ``rh-host plugin pack`` does, or
        an archive of one) as a new version; ``activate``: make it the version new batches run."""
        data = plugin_archive(source)
        params = {"activate": str(activate).lower()}
        return decode(self._request("POST", "/v1/plugins", content=data, params=params), plugin_view())

    def set_plugin_config(self, name: str, config: dict[str, Any], secrets: dict[str, str | None]) -> None:
        """Replace the plugin's stored config; set (or, with None, remove) the given secrets."""
        body = {"config": config, "secrets": secrets}
        response = self._request("PUT", f"/v1/plugins/{quote(name, safe='')}/config", json=body)
        if not response.is_success:
            raise api_error(response)

    def submit(self, batch_id: str, results: Results, metadata: dict[str, Any] | None = None) -> BatchAccepted:
        """Send a batch, streamed as JSONL (with ``metadata``: as a multipart form, the metadata in its
        own field, so that it may be large); returns once the service has stored it. Sending the same
        batch again is harmless (``duplicate`` is then true)."""
        content_type, body = (JSONL, sync_chunks(results)) if metadata is None else sync_form(results, metadata)
        response = self._request("POST", batch_path(batch_id), content=body, headers={"Content-Type": content_type})
        return decode(response, BatchAccepted)

    def upload_url(self, batch_id: str, metadata: dict[str, Any] | None = None, expires_in: int = 86_400) -> UploadUrl:
        """A URL that lets whoever holds it PUT this one batch (no key in it) until it expires: what
        ``vllm run_batch -o URL`` uploads its output to. ``metadata`` travels sealed in the URL."""
        body = {"metadata": metadata or {}, "expires_in": expires_in}
        response = self._request("POST", batch_path(batch_id, "/upload-url"), json=body)
        return decode(response, UploadUrl)

    def status(self, batch_id: str) -> BatchView:
        return decode(self._request("GET", batch_path(batch_id)), BatchView)

    def list(self, status: BatchStatus | None = None, limit: int = 50) -> list[BatchView]:
        """The tenant's batches, newest first."""
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        return decode(self._request("GET", "/v1/batches", params=params), list[BatchView])

    def outcome(self, batch_id: str) -> BatchOutcome:
        """The merged outcome; until the batch is done, :class:`ApiError` with code ``pending``."""
        return decode(self._request("GET", batch_path(batch_id, "/outcome")), BatchOutcome)

    def runs(self, batch_id: str) -> list[RunSummary]:
        """Every recorded handler run of the batch: status, error, usage."""
        return decode(self._request("GET", batch_path(batch_id, "/runs")), list[RunSummary])

    def run(self, batch_id: str, plugin: str) -> RunDetail:
        """One handler's latest run of the batch, with its logs."""
        path = batch_path(batch_id, f"/runs/{quote(plugin, safe='')}")
        return decode(self._request("GET", path), RunDetail)

    def wait(self, batch_id: str, timeout: float = 600.0) -> BatchOutcome:
        """The outcome once it is stored (long-polling); :class:`OutcomeTimeout` after ``timeout`` s.
        A broken connection or a 503 (the service restarting) is retried until then: the batch is stored."""
        deadline = time.monotonic() + timeout
        backoff = Backoff()
        while True:
            hold = max(0.0, min(SERVER_WAIT_SECONDS, deadline - time.monotonic()))
            try:
                response = self._request(
                    "GET", batch_path(batch_id, "/outcome"), params={"wait": round(hold, 3)}, timeout=hold + 30.0
                )
            except TransportError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(backoff.next(deadline))
                continue
            if response.status_code == 503 and time.monotonic() < deadline:
                time.sleep(backoff.next(deadline))
                continue
            backoff.reset()
            if response.status_code != 409:
                return decode(response, BatchOutcome)
            error = api_error(response)
            if error.code != "pending":
                raise error
            if time.monotonic() >= deadline:
                raise OutcomeTimeout(batch_id, timeout, self.status(batch_id).status)
