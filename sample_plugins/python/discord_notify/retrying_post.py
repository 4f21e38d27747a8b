"""POST one JSON document with a timeout per attempt and exponential backoff (stdlib only).

Shared, byte for byte, by the webhook, Slack and Discord plugins (each plugin is its own archive).
Retries on connection errors, timeouts, 429 and 5xx; never follows redirects (a redirect is reported:
the grant covers the configured host only). A 429's Retry-After is honoured up to the backoff cap.
"""

import json
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Optional


class PostResult:
    def __init__(self, ok: bool, status: Optional[int], attempts: int, error: Optional[str], body: bytes = b""):
        self.ok = ok
        self.status = status
        self.attempts = attempts
        self.error = error
        self.body = body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx code


_opener = urllib.request.build_opener(_NoRedirect)


def check_retry_config(config: Dict[str, Any]) -> Dict[str, float]:
    """Validate the retry keys shared by the HTTP plugins; ValueError names the key."""
    values = {
        "timeout_seconds": config.get("timeout_seconds", 10),
        "max_attempts": config.get("max_attempts", 4),
        "backoff_seconds": config.get("backoff_seconds", 0.5),
        "max_backoff_seconds": config.get("max_backoff_seconds", 8),
    }
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{key} must be a non-negative number")
    if values["timeout_seconds"] <= 0:
        raise ValueError("timeout_seconds must be positive")
    if int(values["max_attempts"]) != values["max_attempts"] or values["max_attempts"] < 1:
        raise ValueError("max_attempts must be a whole number of at least 1")
    return {k: float(v) for k, v in values.items()}


def check_url(url: Any, key: str) -> str:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ValueError(f"{key} is required in config and must be an http(s) URL")
    return url


def post_json(
    url: str,
    document: Any,
    headers: Dict[str, str],
    retry: Dict[str, float],
    logger: Any,
    sleep: Any = time.sleep,
) -> PostResult:
    data = json.dumps(document, separators=(",", ":"), default=str).encode("utf-8")
    attempts = int(retry["max_attempts"])
    delay = retry["backoff_seconds"]
    error: Optional[str] = None
    status: Optional[int] = None
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        retry_after: Optional[float] = None
        try:
            with _opener.open(request, timeout=retry["timeout_seconds"]) as response:
                return PostResult(True, response.status, attempt, None, response.read(65536))
        except urllib.error.HTTPError as exc:
            status = exc.code
            error = f"HTTP {exc.code}"
            if 300 <= exc.code < 400:
                return PostResult(False, status, attempt, f"redirect to {exc.headers.get('Location')} not followed")
            if exc.code != 429 and exc.code < 500:
                detail = exc.read(500).decode("utf-8", "replace")
                return PostResult(False, status, attempt, f"HTTP {exc.code}: {detail}")
            retry_after = _retry_after(exc.headers.get("Retry-After"))
        except TimeoutError:
            status, error = None, f"timed out after {retry['timeout_seconds']:g} s"
        except urllib.error.URLError as exc:
            reason = exc.reason
            timed_out = isinstance(reason, TimeoutError)
            status = None
            error = f"timed out after {retry['timeout_seconds']:g} s" if timed_out else f"connection failed: {reason}"
        except (ConnectionError, OSError) as exc:  # reset mid-response, refused by the egress broker
            status, error = None, f"connection failed: {exc}"
        if attempt < attempts:
            wait = min(retry["max_backoff_seconds"], retry_after if retry_after is not None else delay)
            logger.warning(
                f"attempt {attempt} failed ({error}); retrying in {wait:g} s",
                extra={"attempt": attempt, "error": error, "retry_in_seconds": wait},
            )
            sleep(wait)
            delay = min(retry["max_backoff_seconds"], delay * 2)
    return PostResult(False, status, attempts, error)


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
