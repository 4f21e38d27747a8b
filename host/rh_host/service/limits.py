"""Clamping a plugin's requested limits to its tenant's ceilings, and saying what was clamped."""

from __future__ import annotations

import msgspec

from rh_host.service.settings import Quotas
from rh_sandbox import Limits

__all__ = ["CEILINGS", "EffectiveLimits", "clamp_limits"]

# Limits fields a tenant quota caps; the others keep the sandbox's per-run values.
CEILINGS = ("cpu_seconds", "memory_mb", "wall_seconds", "max_output_kb", "max_log_kb")


class EffectiveLimits(msgspec.Struct, frozen=True, kw_only=True):
    requested: Limits
    effective: Limits
    clamped: list[str]  # fields lowered to the tenant's ceiling


def clamp_limits(requested: Limits, quotas: Quotas) -> EffectiveLimits:
    changes = {}
    for field in CEILINGS:
        ceiling = getattr(quotas, field)
        if getattr(requested, field) > ceiling:
            changes[field] = ceiling
    effective = msgspec.structs.replace(requested, **changes) if changes else requested
    return EffectiveLimits(requested=requested, effective=effective, clamped=sorted(changes))
