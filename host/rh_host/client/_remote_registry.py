"""The guide's registry, remote: ``process_results`` sends the batch to an rh-host service and returns
whether every enabled handler succeeded, once the outcome is stored. A batch server that calls
``get_registry().process_results(...)`` switches with one line::

    registry = RemoteRegistry("https://rh.example.com", key=os.environ["RH_KEY"])   # was: get_registry()
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rh_host.api_models import BatchAccepted
from rh_host.client._errors import ApiError, TransportError
from rh_host.client._handler_plugin import handler_config, write_handler_plugin
from rh_host.client._requests import Backoff
from rh_host.client._sync import Client
from rh_host.outcome import BatchOutcome
from rh_sdk import ResultHandler

__all__ = ["RemoteRegistry"]


class RemoteRegistry:
    """``register`` / ``process_results`` of the guide's registry, run by the service's sandboxed handlers.

    The handlers are the tenant's plugins on the service: ``register(handler)`` uploads a handler object's
    class and config, ``register(path)`` a plugin directory (or a .zip / .tar.gz of one), and activates it.
    ``process_results`` blocks until the batch's outcome is stored (at most ``timeout`` s, then
    :class:`~rh_host.client.OutcomeTimeout`; the batch still runs, and calling again with the same batch
    waits for it without running it twice). A refusal raises :class:`~rh_host.client.ApiError`; handler
    failures are the outcome's (``last_outcome``), never exceptions.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 600.0,
        client: Client | None = None,
    ) -> None:
        self.client = client if client is not None else Client(url, key)
        self._owns_client = client is None
        self.timeout = timeout
        self.last_outcome: BatchOutcome | None = None
        self.last_accepted: BatchAccepted | None = None

    def __enter__(self) -> RemoteRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def register(self, handler: ResultHandler | str | os.PathLike[str]) -> str:
        """Upload a handler to the service and activate it; returns the plugin's name.

        ``handler``: a ResultHandler object, as in the guide (the module file that defines its class is
        uploaded with a generated manifest, and its config is stored on the service, secret-looking
        string values sealed as secrets), or the path of a plugin directory or archive."""
        if not isinstance(handler, ResultHandler):
            return self.client.push_plugin(Path(handler)).name
        with tempfile.TemporaryDirectory(prefix="rh-register-") as directory:
            name = write_handler_plugin(handler, Path(directory))
            self.client.push_plugin(Path(directory))
        plain, secrets = handler_config(handler)
        self.client.set_plugin_config(name, plain, secrets)
        return name

    def process_results(
        self, batch_id: str, results: list[dict[str, Any]], metadata: dict[str, Any] | None = None
    ) -> bool:
        """Submit the batch, wait for its outcome; True when every enabled handler succeeded.

        Both steps outlive a service restart within ``timeout``: a submit whose connection broke (or that
        got a 503) is sent again, which is harmless (the same content under the same id is one batch)."""
        deadline = time.monotonic() + self.timeout
        self.last_outcome = None
        results = list(results)  # sent again on a retry
        backoff = Backoff()
        while True:
            try:
                self.last_accepted = self.client.submit(batch_id, results, metadata)
                break
            except (TransportError, ApiError) as exc:
                retriable = isinstance(exc, TransportError) or exc.status_code == 503
                if not retriable or time.monotonic() >= deadline:
                    raise
                time.sleep(backoff.next(deadline))
        self.last_outcome = self.client.wait(batch_id, timeout=max(0.0, deadline - time.monotonic()))
        return self.last_outcome.success
