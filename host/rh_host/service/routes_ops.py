"""Operations routes: health (open, for load balancers), Prometheus metrics and the cluster's nodes and
queues (operator token)."""

from __future__ import annotations

import time

import sqlalchemy as sa
from anyio import to_thread
from litestar import Request, get
from litestar.di import Provide

from rh_host.service.auth import is_operator, operator_dependency, service_of
from rh_host.service.errors import Unavailable
from rh_host.service.models import ClusterView, Health, NodeView, TenantQueue

__all__ = ["cluster", "healthz", "metrics"]


@get(
    "/healthz",
    summary="Liveness and database reachability",
    description="Without a key: status only. With the operator token: the queue counts too.",
    tags=["operations"],
)
async def healthz(request: Request) -> Health:
    store = service_of(request).store
    operator = is_operator(request)
    try:
        depth = await to_thread.run_sync(store.queue_depth if operator else store.ping)
    except sa.exc.SQLAlchemyError as exc:
        raise Unavailable(f"database unreachable: {type(exc).__name__}") from None
    return Health(status="ok", database="ok", batches=depth)


@get(
    "/metrics",
    summary="Prometheus metrics: batches, runs by status, durations, queue depth",
    dependencies={"operator": Provide(operator_dependency)},
    media_type="text/plain; version=0.0.4",
    tags=["operations"],
)
async def metrics(request: Request, operator: bool) -> bytes:
    return await to_thread.run_sync(service_of(request).metrics.render)


@get(
    "/v1/cluster",
    summary="The nodes sharing this database (role, heartbeat, leases held) and the queue of each tenant",
    dependencies={"operator": Provide(operator_dependency)},
    tags=["operations"],
)
async def cluster(request: Request, operator: bool) -> ClusterView:
    service = service_of(request)
    if service.claims is None:
        raise Unavailable("the service is not running")
    node_rows, queues = await to_thread.run_sync(service.claims.cluster)
    alive_after = time.time() - service.settings.lease_seconds
    return ClusterView(
        nodes=[
            NodeView(
                id=r.id,
                role=r.role,
                started_at=r.started_at,
                heartbeat_at=r.heartbeat_at,
                alive=r.heartbeat_at >= alive_after,
                leases_held=r.leases_held,
            )
            for r in node_rows
        ],
        tenants=[TenantQueue(tenant_id=r.tenant_id, name=r.name, queued=r.queued, running=r.running) for r in queues],
    )
