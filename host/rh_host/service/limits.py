"""Clamping a plugin's requested limits to its tenant's ceilings, and saying what was clamped.

Every field of ``rh_sandbox.types.Limits`` has a ceiling of the same name in ``Quotas``: nothing a
manifest asks for reaches the sandbox unclamped. Runs without a tenant (``rh-host run``,
``rh-host plugin test``) are clamped to the operator's default quotas.
"""

from __future__ import annotations

import msgspec

from rh_host.service.settings import Quotas
from rh_sandbox import Limits

__all__ = ["CEILINGS", "EffectiveLimits", "clamp_limits"]

CEILINGS: tuple[str, ...] = Limits.__struct_fields__
if missing := [field for field in CEILINGS if field not in Quotas.__struct_fields__]:
    raise ImportError(f"Quotas has no ceiling for the Limits fields {missing}")  # caught by any test run


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
