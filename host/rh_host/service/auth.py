"""Bearer-key checks, as Litestar dependencies: ``caller`` for tenant routes, ``operator`` for the rest.

An unknown key and a missing key answer alike (401); a tenant key on an operator route answers 403.
"""

from __future__ import annotations

from typing import Any

import msgspec
from anyio import to_thread
from litestar import Request

from rh_host.service.errors import Forbidden, Unauthorized
from rh_host.service.keys import hash_key, same_secret
from rh_host.service.service import Service
from rh_host.service.settings import Quotas

__all__ = ["Caller", "bearer", "caller_of", "is_operator", "operator_dependency", "service_of", "tenant_dependency"]


class Caller(msgspec.Struct, frozen=True):
    tenant_id: str
    name: str
    quotas: Quotas


def service_of(request: Request) -> Service:
    return request.app.state["service"]


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing bearer key: send 'Authorization: Bearer <key>'")
    return key.strip()


async def tenant_dependency(request: Request) -> Caller:
    key = bearer(request)
    service = service_of(request)
    row = await to_thread.run_sync(service.store.tenant_by_key_hash, hash_key(key))
    if row is None:
        if same_secret(key, service.operator_token):
            raise Forbidden("this route takes a tenant key, not the operator token")
        raise Unauthorized("invalid API key")
    return caller_of(row)


def caller_of(row: Any) -> Caller:
    """The Caller of a stored tenant row."""
    return Caller(tenant_id=row.id, name=row.name, quotas=msgspec.json.decode(row.quotas, type=Quotas))


def is_operator(request: Request) -> bool:
    """Whether the request carries the operator token (for routes open to all that show it more)."""
    try:
        return same_secret(bearer(request), service_of(request).operator_token)
    except Unauthorized:
        return False


async def operator_dependency(request: Request) -> bool:
    key = bearer(request)
    if not same_secret(key, service_of(request).operator_token):
        service = service_of(request)
        if await to_thread.run_sync(service.store.tenant_by_key_hash, hash_key(key)) is not None:
            raise Forbidden("this route needs the operator token")
        raise Unauthorized("invalid operator token")
    return True
