"""Rows to API models: the one place that decides what a tenant is shown (never a secret)."""

from __future__ import annotations

import msgspec

from rh_host.manifest import Manifest
from rh_host.service.limits import clamp_limits
from rh_host.service.models import (
    BatchView,
    PluginView,
    RunDetail,
    RunSummary,
    TenantUsage,
    TenantView,
    VersionView,
)
from rh_host.service.settings import Quotas
from rh_host.service.store import Row
from rh_sandbox import RunResult
from rh_sdk.protocol import Usage

__all__ = ["batch_view", "plugin_view", "run_detail", "run_summary", "tenant_view", "version_view"]

_decode_manifest = msgspec.json.Decoder(Manifest).decode
_decode_result = msgspec.json.Decoder(RunResult).decode


def tenant_view(row: Row, usage: dict[str, int] | None = None) -> TenantView:
    return TenantView(
        id=row.id,
        name=row.name,
        quotas=msgspec.json.decode(row.quotas, type=Quotas),
        created_at=row.created_at,
        usage=TenantUsage(**usage) if usage is not None else None,
    )


def version_view(row: Row, quotas: Quotas) -> VersionView:
    manifest = _decode_manifest(row.manifest)
    return VersionView(
        seq=row.seq,
        version=row.version,
        digest=row.digest,
        runtime=manifest.runtime,
        entry=manifest.entry,
        priority=manifest.priority,
        created_at=row.created_at,
        limits=clamp_limits(manifest.limits, quotas),
    )


def plugin_view(plugin: Row, versions: list[Row], quotas: Quotas, with_versions: bool) -> PluginView:
    views = [version_view(v, quotas) for v in versions]
    active = next((v for v in views if v.seq == plugin.active_seq), None)
    return PluginView(
        name=plugin.name,
        enabled=plugin.enabled,
        active_seq=plugin.active_seq,
        active=active,
        versions=views if with_versions else None,
    )


def batch_view(row: Row, success: bool | None = None) -> BatchView:
    """``success`` comes from the outcome's own column: a status never reads the outcome itself."""
    return BatchView(
        batch_id=row.batch_id,
        status=row.status,
        result_count=row.result_count,
        attempts=row.attempts,
        submitted_at=row.submitted_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        success=success,
    )


class _StoredRunHead(msgspec.Struct):
    """What a run summary needs of a stored RunResult: its logs are counted, never decoded into records
    (a run may hold hundreds of thousands; the list of a batch's runs must not cost them)."""

    error: str | None = None
    usage: Usage = msgspec.field(default_factory=Usage)
    isolation: str = ""
    logs: list[msgspec.Raw] = []


_decode_head = msgspec.json.Decoder(_StoredRunHead).decode


def run_summary(row: Row) -> RunSummary:
    return _summary(row, _decode_head(row.result))


def _summary(row: Row, result: RunResult | _StoredRunHead) -> RunSummary:
    return RunSummary(
        plugin=row.plugin,
        status=row.status,
        error=result.error,
        usage=result.usage,
        isolation=result.isolation,
        log_count=len(result.logs),
        recorded_at=row.created_at,
    )


def run_detail(row: Row) -> RunDetail:
    result = _decode_result(row.result)
    summary = _summary(row, result)
    return RunDetail(**msgspec.structs.asdict(summary), logs=result.logs, egress=result.egress)
