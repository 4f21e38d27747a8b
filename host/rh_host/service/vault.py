"""Plugin secrets, sealed at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The key comes from ``RH_SECRET_KEY`` or ``<data-dir>/secret-key`` (created 0600 on first start).
Secrets are unsealed only to build one invocation; anything shown or stored elsewhere is masked
or redacted (``redaction``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import msgspec
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rh_host.service.errors import ServiceError
from rh_host.service.keys import read_or_create_secret_file

__all__ = ["MASK", "SECRET_KEY_ENV", "SECRET_KEY_FILE", "Vault", "masked"]

SECRET_KEY_ENV = "RH_SECRET_KEY"
SECRET_KEY_FILE = "secret-key"
MASK = "********"


class Vault:
    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode("ascii"))
            self._key = base64.urlsafe_b64decode(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ServiceError(f"secret key is not a Fernet key (32 url-safe base64 bytes): {exc}") from None

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Vault:
        key = os.environ.get(SECRET_KEY_ENV, "").strip()
        if not key:
            key = read_or_create_secret_file(data_dir / SECRET_KEY_FILE, lambda: Fernet.generate_key().decode("ascii"))
        return cls(key)

    def derived(self, purpose: str) -> Fernet:
        """A Fernet key of its own for ``purpose`` (HKDF-SHA256 of the secret key): a token made for one
        purpose never opens as another's, nor as sealed secrets."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"rh-host {purpose}".encode())
        return Fernet(base64.urlsafe_b64encode(hkdf.derive(self._key)))

    def seal(self, values: dict[str, Any]) -> str | None:
        if not values:
            return None
        return self._fernet.encrypt(msgspec.json.encode(values)).decode("ascii")

    def unseal(self, token: str | None) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return msgspec.json.decode(self._fernet.decrypt(token.encode("ascii")))
        except InvalidToken:
            raise ServiceError("cannot unseal plugin secrets: the secret key changed or the data is corrupt") from None


def masked(values: dict[str, Any]) -> dict[str, str]:
    return dict.fromkeys(values, MASK)
