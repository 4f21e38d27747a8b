"""The client's exceptions, translated once from the HTTP layer.

ClientError                  anything the client could not do
 ├── ApiError                the service answered 4xx/5xx: ``code`` (the API's), ``status_code``, ``message``
 ├── TransportError          no answer: the service could not be reached, or the connection broke
 └── OutcomeTimeout          the batch has no outcome yet after the time given (also a TimeoutError)
"""

from __future__ import annotations

import httpx
import msgspec

from rh_host.api_models import ErrorBody

__all__ = ["ApiError", "ClientError", "OutcomeTimeout", "TransportError", "api_error"]


class ClientError(Exception):
    """The client could not do what was asked."""


class ApiError(ClientError):
    """The service refused the request; ``code`` is the API's error code (``invalid_batch``, ``pending``...)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status_code})")
        self.status_code = status_code
        self.code = code
        self.message = message


class TransportError(ClientError):
    """The service could not be reached, or the connection broke before an answer."""


class OutcomeTimeout(ClientError, TimeoutError):
    """The batch is accepted but has no outcome yet: waiting again later is safe."""

    def __init__(self, batch_id: str, waited_seconds: float, status: str) -> None:
        super().__init__(f"batch {batch_id!r} has no outcome after {waited_seconds:g} s (it is {status})")
        self.batch_id = batch_id
        self.status = status


def api_error(response: httpx.Response) -> ApiError:
    """The service's ``{"error": {"code", "message"}}`` as an exception; any other body keeps its status."""
    try:
        detail = msgspec.json.decode(response.content, type=ErrorBody).error
    except msgspec.DecodeError:
        reason = response.reason_phrase or "error"
        return ApiError(
            response.status_code, "http_error", f"HTTP {response.status_code} {reason}: {response.text[:200]}"
        )
    return ApiError(response.status_code, detail.code, detail.message)
