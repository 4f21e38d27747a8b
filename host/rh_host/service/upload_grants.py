"""Upload URLs: a tenant asks for a URL that lets whoever holds it PUT one batch, until it expires.

For batch systems that can send a body to a URL but no header of their own: vLLM's ``run_batch -o URL``
PUTs its output file with no ``Authorization``, and logs the URL it was given. So the URL carries no
tenant key: it carries a token naming one tenant, one batch id, an expiry and the batch's metadata,
sealed (encrypted and authenticated) with a key derived from the service's secret key. A token is good
for its batch id only; re-sending the same file is a harmless duplicate, another file a 409.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
from cryptography.fernet import Fernet, InvalidToken

from rh_host.api_models import UploadUrlRequest
from rh_host.service.errors import BadRequest, Forbidden, Unauthorized

__all__ = [
    "MAX_GRANT_SECONDS",
    "MAX_TOKEN_CHARS",
    "UploadGrant",
    "UploadGrants",
]

MAX_GRANT_SECONDS = 7 * 24 * 3600
MAX_TOKEN_CHARS = 8192  # the URL must fit a request head (and a proxy's); metadata is most of it


class UploadGrant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    purpose: Literal["batch-upload"]
    tenant_id: str
    batch_id: str
    expires_at: float
    metadata: dict[str, Any] = {}


class UploadGrants:
    """Issues and checks upload tokens (no state: everything the service needs is in the token)."""

    def __init__(self, fernet: Fernet) -> None:
        self._fernet = fernet

    def issue(self, tenant_id: str, batch_id: str, request: UploadUrlRequest) -> tuple[str, float]:
        if not 1 <= request.expires_in <= MAX_GRANT_SECONDS:
            raise BadRequest(f"expires_in: must be between 1 and {MAX_GRANT_SECONDS} seconds")
        expires_at = round(time.time() + request.expires_in, 3)
        grant = UploadGrant(
            purpose="batch-upload",
            tenant_id=tenant_id,
            batch_id=batch_id,
            expires_at=expires_at,
            metadata=request.metadata,
        )
        token = self._fernet.encrypt(msgspec.msgpack.encode(grant)).decode("ascii")
        if len(token) > MAX_TOKEN_CHARS:
            raise BadRequest(
                f"metadata: too large for an upload URL ({len(token)} characters of token; at most {MAX_TOKEN_CHARS})"
            )
        return token, expires_at

    def check(self, token: str, batch_id: str) -> UploadGrant:
        """The grant a token carries, for this batch id and not expired; else 401 (or 403: another batch)."""
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("invalid upload token")
        try:
            grant = msgspec.msgpack.decode(self._fernet.decrypt(token.encode("ascii")), type=UploadGrant)
        except (InvalidToken, UnicodeEncodeError, msgspec.DecodeError, msgspec.ValidationError):
            raise Unauthorized("invalid upload token") from None
        if grant.expires_at < time.time():
            raise Unauthorized(f"upload token expired at {grant.expires_at} (seconds since the epoch)")
        if grant.batch_id != batch_id:
            raise Forbidden(f"this upload token is for batch {grant.batch_id!r}, not {batch_id!r}")
        return grant
