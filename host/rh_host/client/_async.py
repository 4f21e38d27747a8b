"""The asyncio client: :class:`~rh_host.client.Client`'s calls, awaitable."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from rh_host.api_models import BatchAccepted, BatchView, RunDetail, RunSummary, UploadUrl
from rh_host.client._body import Results, async_chunks, async_form
from rh_host.client._errors import OutcomeTimeout, TransportError, api_error
from rh_host.client._requests import (
    JSONL,
    SERVER_WAIT_SECONDS,
    Backoff,
    batch_path,
    decode,
    headers_for,
    resolve,
)
from rh_host.client._sync import BatchStatus
from rh_host.outcome import BatchOutcome

__all__ = ["AsyncClient"]


@asynccontextmanager
async def _transport_errors(url: str) -> AsyncIterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        raise TransportError(f"{url}: {type(exc).__name__}: {exc}") from exc


class AsyncClient:
    """As :class:`~rh_host.client.Client`, for asyncio (``async with``, or ``await aclose()``)."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, key = resolve(url, key)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers_for(key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with _transport_errors(self.url):
            return await self._http.request(method, path, **kwargs)

    async def submit(self, batch_id: str, results: Results, metadata: dict[str, Any] | None = None) -> BatchAccepted:
        if metadata is None:
            content_type, body = JSONL, await async_chunks(results)
        else:
            content_type, body = await async_form(results, metadata)
        response = await self._request(
            "POST", batch_path(batch_id), content=body, headers={"Content-Type": content_type}
        )
        return decode(response, BatchAccepted)

    async def upload_url(
        self, batch_id: str, metadata: dict[str, Any] | None = None, expires_in: int = 86_400
    ) -> UploadUrl:
        body = {"metadata": metadata or {}, "expires_in": expires_in}
        response = await self._request("POST", batch_path(batch_id, "/upload-url"), json=body)
        return decode(response, UploadUrl)

    async def status(self, batch_id: str) -> BatchView:
        return decode(await self._request("GET", batch_path(batch_id)), BatchView)

    async def list(self, status: BatchStatus | None = None, limit: int = 50) -> list[BatchView]:
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        return decode(await self._request("GET", "/v1/batches", params=params), list[BatchView])

    async def outcome(self, batch_id: str) -> BatchOutcome:
        return decode(await self._request("GET", batch_path(batch_id, "/outcome")), BatchOutcome)

    async def runs(self, batch_id: str) -> list[RunSummary]:
        return decode(await self._request("GET", batch_path(batch_id, "/runs")), list[RunSummary])

    async def run(self, batch_id: str, plugin: str) -> RunDetail:
        path = batch_path(batch_id, f"/runs/{quote(plugin, safe='')}")
        return decode(await self._request("GET", path), RunDetail)

    async def wait(self, batch_id: str, timeout: float = 600.0) -> BatchOutcome:
        deadline = time.monotonic() + timeout
        backoff = Backoff()
        while True:
            hold = max(0.0, min(SERVER_WAIT_SECONDS, deadline - time.monotonic()))
            try:
                response = await self._request(
                    "GET", batch_path(batch_id, "/outcome"), params={"wait": round(hold, 3)}, timeout=hold + 30.0
                )
            except TransportError:
                if time.monotonic() >= deadline:
                    raise
                await anyio.sleep(backoff.next(deadline))
                continue
            if response.status_code == 503 and time.monotonic() < deadline:
                await anyio.sleep(backoff.next(deadline))
                continue
            backoff.reset()
            if response.status_code != 409:
                return decode(response, BatchOutcome)
            error = api_error(response)
            if error.code != "pending":
                raise error
            if time.monotonic() >= deadline:
                raise OutcomeTimeout(batch_id, timeout, (await self.status(batch_id)).status)
