"""cpu_seconds holds for CPU spent in host calls too (fuel counts wasm instructions only): the worker's
CPU clock ends such a run ``cpu_limit``, and the runs beside and after it are untouched."""

from __future__ import annotations

import pytest
import wasm_guests as g
from wasm_helpers import RunWat

from rh_sandbox.types import RunStatus
from rh_sandbox.wasm._cpu_clock import cpu_timer_seconds
from rh_sandbox.wasm._engine import fuel_for

CPU_SECONDS = 0.5
WALL_SECONDS = 30.0  # far past the CPU limit: the CPU clock must end these runs, not the wall clock


@pytest.mark.parametrize("guest", [g.RANDOM_GET_LOOP, g.CLOCK_TIME_LOOP], ids=["random_get", "clock_time_get"])
def test_cpu_spent_in_host_calls_ends_cpu_limit(run_wat: RunWat, guest: str) -> None:
    hostile = run_wat(guest, cpu_seconds=CPU_SECONDS, wall_seconds=WALL_SECONDS)
    well_behaved = run_wat(g.replying({"ran": True, "ok": True}), cpu_seconds=CPU_SECONDS, wall_seconds=WALL_SECONDS)

    assert hostile.status is RunStatus.CPU_LIMIT, (hostile.status, hostile.error)
    assert "CPU limit reached" in (hostile.error or "") and "host calls included" in (hostile.error or "")
    # ended when the worker had spent the timer's budget, and promptly after (not one CPU second later)
    assert cpu_timer_seconds(CPU_SECONDS) * 1000 <= hostile.usage.cpu_ms < 2 * cpu_timer_seconds(CPU_SECONDS) * 1000
    assert hostile.usage.wall_ms < WALL_SECONDS * 1000 / 2  # generous: a loaded machine stretches CPU time
    # the same worker serves the next run, which the interrupt meant for the hostile one does not reach
    assert well_behaved.status is RunStatus.OK, (well_behaved.status, well_behaved.error)
    assert well_behaved.usage.cpu_ms < CPU_SECONDS * 1000


def test_a_run_under_its_cpu_limit_is_never_interrupted(run_wat: RunWat) -> None:
    """Back-to-back short runs with a tight CPU limit: each arms and disarms the clock, none is hit."""
    results = [run_wat(g.replying({"ran": True, "ok": True}), cpu_seconds=0.02) for _ in range(30)]
    assert [r.status for r in results] == [RunStatus.OK] * 30


def test_pure_computation_is_ended_by_fuel_or_the_cpu_clock(run_wat: RunWat) -> None:
    """Fuel first, normally; the CPU clock when the machine is so loaded that a CPU second (steal time
    included, as the kernel counts it) runs 10 % fewer instructions than fuel is calibrated for."""
    result = run_wat(g.SPIN, cpu_seconds=0.2, wall_seconds=WALL_SECONDS)
    assert result.status is RunStatus.CPU_LIMIT
    if "fuel" in (result.error or ""):
        assert result.usage.fuel == fuel_for(0.2)
    else:
        assert result.usage.cpu_ms >= cpu_timer_seconds(0.2) * 1000 and result.usage.fuel is None
