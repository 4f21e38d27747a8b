"""What the sync and async clients share, without I/O: each call's request and how its answer decodes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from rh_host.client._errors import ApiError, api_error

if TYPE_CHECKING:
    from rh_host.service.models import PluginView

__all__ = [
    "DEFAULT_URL",
    "SERVER_WAIT_SECONDS",
    "Backoff",
    "batch_path",
    "decode",
    "headers_for",
    "plugin_archive",
    "plugin_view",
    "resolve",
]

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8700"
SERVER_WAIT_SECONDS = 30.0  # the longest the service holds one outcome request
JSONL = "application/jsonl"


class Backoff:
    """Delays between retries of a wait: 0.25 s doubling to 5 s, never past the deadline."""

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        self.first, self.cap, self.delay = first, cap, first

    def next(self, deadline: float) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return max(0.0, min(delay, deadline - time.monotonic()))

    def reset(self) -> None:
        self.delay = self.first


def resolve(url: str | None, key: str | None) -> tuple[str, str]:
    """The service URL and tenant key: as given, else $RH_URL and $RH_KEY (as the CLI reads them)."""
    url = url or os.environ.get("RH_URL") or DEFAULT_URL
    key = key or os.environ.get("RH_KEY")
    if not key:
        raise ValueError("no tenant API key: pass key= or set RH_KEY")
    return url.rstrip("/"), key


def headers_for(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def batch_path(batch_id: str, suffix: str = "") -> str:
    return f"/v1/batches/{quote(batch_id, safe='')}{suffix}"


def plugin_archive(source: Path) -> bytes:
    """A plugin directory packed as ``rh-host plugin pack`` packs it (validated first), or an archive's bytes."""
    if source.is_dir():
        from rh_host.manifest import load_plugin
        from rh_host.service.archives import pack_directory  # the service's own archive format

        load_plugin(source)  # a bad manifest fails here, naming the file and field
        return pack_directory(source)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no plugin directory or archive")
    return source.read_bytes()


def plugin_view() -> type[PluginView]:
    """The plugin body's type, imported when a plugin is pushed: it pulls in the service's limits."""
    from rh_host.service.models import PluginView

    return PluginView


def decode(response: httpx.Response, type_: type[T]) -> T:
    """The answer's body as ``type_``; a 4xx/5xx raises :class:`ApiError` with the API's code."""
    if not response.is_success:
        raise api_error(response)
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiError(response.status_code, "bad_response", f"unexpected answer body: {exc}") from None
