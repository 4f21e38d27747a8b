"""The HTTP client the tenant, plugin and batch commands share: --url/--key or RH_URL/RH_KEY, httpx,
and the service's JSON errors turned into one-line CLI errors (read as :mod:`rh_host.client` reads them)."""

from __future__ import annotations

from typing import Any

import click
import httpx

from rh_host.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail
from rh_host.client._errors import api_error

__all__ = ["Client", "key_option", "url_option"]

DEFAULT_URL = "http://127.0.0.1:8700"

url_option = click.option(
    "--url", envvar="RH_URL", default=DEFAULT_URL, show_default=True, help="Service URL (or $RH_URL)."
)
key_option = click.option("--key", envvar="RH_KEY", help="Tenant API key (or $RH_KEY).")


class Client:
    """One connection pool for one command; every non-2xx answer ends the command with its message."""

    def __init__(self, url: str, key: str | None, timeout: float = 60.0) -> None:
        if not key:
            fail("no key: pass --key or set the environment variable")
        self._http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self._http.base_url}: {exc}", code=EXIT_FAILED)
        if response.is_success or response.status_code in ok:
            return response
        fail(str(api_error(response)), code=EXIT_BAD_INPUT if 400 <= response.status_code < 500 else EXIT_FAILED)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()
