"""Clamping a plugin's requested limits to its tenant's ceilings (rh_host.service.limits)."""

from __future__ import annotations

import msgspec
import pytest

from rh_host.service.limits import clamp_limits
from rh_host.service.settings import Quotas
from rh_sandbox import Limits


def test_clamp_lowers_only_what_exceeds_the_ceiling() -> None:
    clamped = clamp_limits(Limits(cpu_seconds=100, memory_mb=64, max_processes=500), Quotas(cpu_seconds=5))
    assert clamped.effective.cpu_seconds == 5 and clamped.effective.memory_mb == 64
    assert clamped.effective.max_processes == Quotas().max_processes  # the default ceiling
    assert clamped.clamped == ["cpu_seconds", "max_processes"]
    assert clamp_limits(Limits(), Quotas()).clamped == []


@pytest.mark.parametrize("field", Limits.__struct_fields__)
def test_every_limit_is_clamped_by_its_quota_and_no_other(field: str) -> None:
    asked = {name: getattr(Limits(), name) * 1000 for name in Limits.__struct_fields__}  # far above every ceiling
    ceiling = getattr(Quotas(), field) / 2
    clamped = clamp_limits(Limits(**asked), msgspec.structs.replace(Quotas(), **{field: type(asked[field])(ceiling)}))
    assert getattr(clamped.effective, field) == type(asked[field])(ceiling)
    assert set(clamped.clamped) == set(Limits.__struct_fields__)  # everything was asked above a ceiling
    modest = clamp_limits(Limits(), msgspec.structs.replace(Quotas(), **{field: type(asked[field])(ceiling)}))
    for other in set(Limits.__struct_fields__) - {field}:  # a plugin asking the defaults is unaffected elsewhere
        assert getattr(modest.effective, other) == getattr(Limits(), other)
