"""Operator routes: tenants, their keys and quotas."""

from __future__ import annotations

from typing import Any

import msgspec
from anyio import to_thread
from litestar import Request, Router, delete, get, post, put
from litestar.di import Provide

from rh_host.names import NAME
from rh_host.service.auth import Caller, operator_dependency, service_of, tenant_dependency
from rh_host.service.errors import BadRequest
from rh_host.service.keys import hash_key, new_tenant_id, new_tenant_key
from rh_host.service.models import QuotasUpdate, TenantCreate, TenantCreated, TenantView
from rh_host.service.settings import Quotas
from rh_host.service.views import tenant_view

__all__ = ["me_router", "tenants_router"]


def _check_quotas(quotas: Quotas) -> Quotas:
    problems = quotas.problems()
    if problems:
        raise BadRequest(problems[0])
    return quotas


def _with_defaults(overrides: dict[str, Any] | None, defaults: Quotas) -> Quotas:
    try:
        quotas = msgspec.convert({**msgspec.structs.asdict(defaults), **(overrides or {})}, Quotas)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"quotas: {str(exc).replace('`$.', '`')}") from None
    return _check_quotas(quotas)


@post(
    "/",
    summary="Create a tenant; the API key is in this response only",
    description="Quotas not given take the operator's defaults (`rh-host serve --quota`).",
)
async def create_tenant(request: Request, data: TenantCreate, operator: bool) -> TenantCreated:
    if not NAME.match(data.name):
        raise BadRequest(f"tenant name {data.name[:80]!r} must match {NAME.pattern}")
    service = service_of(request)
    quotas = _with_defaults(data.quotas, service.settings.default_quotas)
    key = new_tenant_key()
    row = await to_thread.run_sync(service.store.create_tenant, new_tenant_id(), data.name, hash_key(key), quotas)
    view = tenant_view(row)
    return TenantCreated(id=view.id, name=view.name, quotas=view.quotas, created_at=view.created_at, api_key=key)


@get("/", summary="List tenants")
async def list_tenants(request: Request, operator: bool) -> list[TenantView]:
    rows = await to_thread.run_sync(service_of(request).store.list_tenants)
    return [tenant_view(r) for r in rows]


async def _with_usage(request: Request, tenant_id: str) -> TenantView:
    store = service_of(request).store
    row = await to_thread.run_sync(store.tenant, tenant_id)
    return tenant_view(row, await to_thread.run_sync(store.usage, tenant_id))


@get("/{tenant_id:str}", summary="One tenant, with what it stores against its quotas")
async def get_tenant(request: Request, tenant_id: str, operator: bool) -> TenantView:
    return await _with_usage(request, tenant_id)


@put("/{tenant_id:str}/quotas", summary="Replace a tenant's quotas (ceilings for its plugins' limits)")
async def set_quotas(request: Request, tenant_id: str, data: QuotasUpdate, operator: bool) -> TenantView:
    store = service_of(request).store
    await to_thread.run_sync(store.set_quotas, tenant_id, _check_quotas(data.quotas))
    return tenant_view(await to_thread.run_sync(store.tenant, tenant_id))


@delete("/{tenant_id:str}", summary="Delete a tenant and everything it owns")
async def delete_tenant(request: Request, tenant_id: str, operator: bool) -> None:
    service = service_of(request)
    await to_thread.run_sync(service.store.delete_tenant, tenant_id)
    await to_thread.run_sync(service.collect_artifacts)


@get("/", summary="The calling tenant, with what it stores against its quotas")
async def whoami(request: Request, caller: Caller) -> TenantView:
    return await _with_usage(request, caller.tenant_id)


tenants_router = Router(
    path="/v1/tenants",
    route_handlers=[create_tenant, list_tenants, get_tenant, set_quotas, delete_tenant],
    dependencies={"operator": Provide(operator_dependency)},
    tags=["operator"],
)
me_router = Router(
    path="/v1/me", route_handlers=[whoami], dependencies={"caller": Provide(tenant_dependency)}, tags=["tenant"]
)
