"""Choosing the level: probe, report, and the one factory the host calls."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from rh_sandbox.dispatch import GrantedRunsApart
from rh_sandbox.isolation import Probe, _gaps, check_isolation, format_probe, make_python_backend
from rh_sandbox.process import ProcessBackend
from rh_sandbox.python.forkserver import ForkServerBackend
from rh_sandbox.strict import StrictProcessBackend
from rh_sandbox.types import SandboxError


def test_probe_describes_this_machine(machine: Probe) -> None:
    assert machine.level in ("basic", "strict")
    assert machine.strict_sandbox_works == (machine.strict_problem is None)
    assert (machine.level == "strict") == machine.strict_sandbox_works
    if machine.bwrap is None:
        assert not machine.strict_sandbox_works
    report = format_probe(machine)
    assert f"Level used by --isolation auto: {machine.level}" in report
    assert "Landlock" in report and "cgroup v1" in report and "seccomp" in report
    assert machine.tenant_cpu_shares == (machine.per_run_cgroups and "cpu" in machine.cgroup_v1_controllers)
    assert f"tenant CPU shares   {'yes' if machine.tenant_cpu_shares else 'no'}" in report
    cpu_gap = "no writable cgroup v1 cpu: no CPU quota per run, no CPU share per tenant"
    assert (cpu_gap in machine.gaps) == (machine.per_run_cgroups and not machine.tenant_cpu_shares)


def test_a_machine_without_the_cpu_hierarchy_reports_the_gap() -> None:
    strict = {"level": "strict", "running_as_root": True, "seccomp": True, "landlock_abi": 7}
    no_cpu = Probe(**strict, per_run_cgroups=True, tenant_cpu_shares=False)
    assert _gaps(no_cpu) == ["no writable cgroup v1 cpu: no CPU quota per run, no CPU share per tenant"]
    assert _gaps(Probe(**strict, per_run_cgroups=True, tenant_cpu_shares=True)) == []
    assert "tenant CPU shares   no" in format_probe(no_cpu)


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SandboxError, match="unknown isolation setting"):
        make_python_backend("paranoid")


def test_strict_demanded_but_unavailable_refuses() -> None:
    without = Probe(strict_problem="bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxError, match="bubblewrap"):
        make_python_backend("strict", probed=without)


def test_the_check_serve_runs_before_it_listens() -> None:
    without = Probe(strict_problem="bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxError, match="isolation 'strict' demanded but unavailable here: bubblewrap"):
        check_isolation("strict", without)
    assert check_isolation("auto", without) is None  # basic, with the warning
    assert check_isolation("basic") is None  # no probe at all
    overlapping = Probe(
        strict_sandbox_works=True, sandbox_uids="2000-2999", sandbox_uid_conflicts=["user 'eve' (uid 2001)"]
    )
    for setting in ("auto", "strict"):
        with pytest.raises(SandboxError, match=r"sandbox uid range 2000-2999 overlaps user 'eve' \(uid 2001\)"):
            check_isolation(setting, overlapping)
    works = Probe(strict_sandbox_works=True, sandbox_uids="2000-2999")
    assert check_isolation("auto", works) is works


def test_auto_degrades_loudly(caplog: pytest.LogCaptureFixture) -> None:
    without = Probe(strict_problem="user namespaces are disabled")
    with caplog.at_level(logging.WARNING, logger="rh.sandbox"):
        backend = make_python_backend("auto", probed=without)
    try:
        assert isinstance(backend, ProcessBackend) and backend.isolation.value == "basic"
        assert any("ISOLATION DEGRADED" in r.getMessage() for r in caplog.records)
    finally:
        backend.close()


def test_basic_never_uses_namespaces() -> None:
    backend = make_python_backend("basic")
    try:
        assert type(backend) is ProcessBackend
    finally:
        backend.close()


@pytest.mark.usefixtures("needs_strict")
def test_strict_backends(machine: Probe) -> None:
    cold = make_python_backend("strict", warm=False, probed=machine)
    warm = make_python_backend("strict", warm=True, probed=machine)
    try:
        assert type(cold) is StrictProcessBackend
        assert type(warm) is GrantedRunsApart and type(warm.warm) is ForkServerBackend
        assert type(warm.granted()) is StrictProcessBackend  # runs with network grants: cold, with egress
    finally:
        cold.close()
        warm.close()


def test_doctor_command_prints_the_probe(machine: Probe) -> None:
    from rh_host.cli.doctor import doctor

    result = CliRunner().invoke(doctor, [])
    assert result.exit_code == 0, result.output
    assert "Level used by --isolation auto" in result.output
    assert "sandbox uids        1879048192-1879113727 (one per tenant)" in result.output
    strict = CliRunner().invoke(doctor, ["--isolation", "strict"])
    assert (strict.exit_code == 0) == machine.strict_sandbox_works
