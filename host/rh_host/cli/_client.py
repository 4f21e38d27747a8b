"""The HTTP client the tenant, plugin and batch commands share: --url/--key or RH_URL/RH_KEY, httpx,
and the service's JSON errors turned into one-line CLI errors (read as :mod:`rh_host.client` reads them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import httpx

from rh_host.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, fail
from rh_host.client._errors import api_error

__all__ = ["Client", "key_option", "operator_options", "operator_token", "url_option"]

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


def operator_token(token: str | None, data_dir: Path) -> str:
    """--token, $RH_OPERATOR_TOKEN, or the ``operator-token`` file ``rh-host serve`` wrote in --data-dir."""
    if token:
        return token
    path = data_dir / "operator-token"
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError as exc:
        fail(f"no operator token: pass --token, set RH_OPERATOR_TOKEN, or point --data-dir at {path} ({exc.strerror})")


def operator_options(func):  # type: ignore[no-untyped-def]
    """--url, --token and --data-dir (where the token is read from when none is given)."""
    func = url_option(func)
    func = click.option("--token", envvar="RH_OPERATOR_TOKEN", help="Operator token (or $RH_OPERATOR_TOKEN).")(func)
    return click.option(
        "--data-dir",
        envvar="RH_DATA_DIR",
        default="./rh-data",
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Where to read the operator token when none is given.",
    )(func)
