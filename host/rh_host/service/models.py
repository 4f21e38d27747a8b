"""Request and response bodies of the HTTP API (msgspec Structs: Litestar encodes and documents them).
The batch bodies and the error body live in :mod:`rh_host.api_models`, which the client shares."""

from __future__ import annotations

from typing import Any

import msgspec

from rh_host.api_models import BatchAccepted, BatchView, ErrorBody, ErrorDetail, RunDetail, RunSummary
from rh_host.service.limits import EffectiveLimits
from rh_host.service.settings import Quotas

__all__ = [
    "BatchAccepted",
    "BatchView",
    "ClusterView",
    "ConfigUpdate",
    "ConfigView",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "NodeView",
    "PluginView",
    "QuotasUpdate",
    "RunDetail",
    "RunSummary",
    "TenantCreate",
    "TenantCreated",
    "TenantQueue",
    "TenantUsage",
    "TenantView",
    "VersionView",
]


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    database: str
    batches: dict[str, int] | None = None  # queue counts: only with the operator token


class NodeView(msgspec.Struct):
    id: str  # host:pid:random, as a running batch's claim names it
    role: str
    started_at: float
    heartbeat_at: float
    alive: bool  # beat within the last lease period (of the answering node's setting)
    leases_held: int  # batches it is running


class TenantQueue(msgspec.Struct):
    tenant_id: str
    name: str
    queued: int
    running: int


class ClusterView(msgspec.Struct):
    nodes: list[NodeView]
    tenants: list[TenantQueue]  # only tenants with queued or running batches


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    quotas: dict[str, Any] | None = None  # fields of Quotas; the others take the operator's defaults


class QuotasUpdate(msgspec.Struct, forbid_unknown_fields=True):
    quotas: Quotas


class TenantUsage(msgspec.Struct):
    """What counts against the totals among a tenant's quotas, in their units (bytes, not MiB)."""

    plugins: int
    artifact_bytes: int
    stored_batches: int
    stored_batch_bytes: int


class TenantView(msgspec.Struct, kw_only=True):
    id: str
    name: str
    quotas: Quotas
    created_at: float
    usage: TenantUsage | None = None  # on single-tenant views


class TenantCreated(TenantView):
    api_key: str  # shown once; only its hash is stored


class VersionView(msgspec.Struct):
    seq: int
    version: str
    digest: str
    runtime: str
    entry: str
    priority: int
    created_at: float
    limits: EffectiveLimits  # requested by the manifest, effective after the tenant's ceilings


class PluginView(msgspec.Struct):
    name: str
    enabled: bool
    active_seq: int | None
    active: VersionView | None
    versions: list[VersionView] | None = None  # on single-plugin views


class ConfigView(msgspec.Struct):
    plugin: str
    config: dict[str, Any]
    secrets: dict[str, str]  # every value masked


class ConfigUpdate(msgspec.Struct, forbid_unknown_fields=True):
    config: dict[str, Any] = {}  # replaces the stored config
    secrets: dict[str, str | None] = {}  # set these secrets; null removes one; others are kept
