"""Credentials: the operator token, tenant API keys (stored as hashes), and files written 0600.

Keys carry 256 bits of randomness, so a plain SHA-256 is a sound lookup hash: there is nothing to
brute-force, and a leaked database does not reveal a usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "OPERATOR_TOKEN_ENV",
    "OPERATOR_TOKEN_FILE",
    "hash_key",
    "load_operator_token",
    "new_tenant_id",
    "new_tenant_key",
    "read_or_create_secret_file",
    "same_secret",
]

OPERATOR_TOKEN_ENV = "RH_OPERATOR_TOKEN"
OPERATOR_TOKEN_FILE = "operator-token"


def new_tenant_id() -> str:
    return "t_" + secrets.token_hex(6)


def new_tenant_key() -> str:
    return "rhk_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def read_or_create_secret_file(path: Path, make: Callable[[], str]) -> str:
    """Return the file's content, creating it with ``make()`` and mode 0600 if it does not exist.

    O_EXCL makes two starting processes agree on one value; the mode is set at creation, never widened.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    value = make()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


def load_operator_token(data_dir: Path) -> tuple[str, str]:
    """The operator token and where it came from (the environment, or a file in the data dir)."""
    from_env = os.environ.get(OPERATOR_TOKEN_ENV, "").strip()
    if from_env:
        return from_env, f"${OPERATOR_TOKEN_ENV}"
    path = data_dir / OPERATOR_TOKEN_FILE
    return read_or_create_secret_file(path, lambda: "rho_" + secrets.token_urlsafe(32)), str(path)
