"""The machine probe: what it finds, the gaps it reports, and ``rh-host doctor`` printing it."""

from __future__ import annotations

from click.testing import CliRunner

from rh_sandbox.probe import _NO_CPU, Probe, _gaps, format_probe


def test_probe_describes_this_machine(machine: Probe) -> None:
    assert machine.level in ("basic", "strict")
    assert machine.strict_sandbox_works == (machine.strict_problem is None)
    assert (machine.level == "strict") == machine.strict_sandbox_works
    if machine.bwrap is None:
        assert not machine.strict_sandbox_works
    report = format_probe(machine)
    assert f"Level used by --isolation auto: {machine.level}" in report
    assert "Landlock" in report and "cgroup v1" in report and "seccomp" in report
    offered = machine.cgroup_v1_controllers if machine.cgroup_version == 1 else machine.cgroup_v2_controllers
    assert machine.tenant_cpu_shares == (machine.per_run_cgroups and "cpu" in (offered or []))
    assert f"per-run cgroups     {'yes (cgroup v' if machine.per_run_cgroups else 'no'}" in report
    assert f"tenant CPU shares   {'yes' if machine.tenant_cpu_shares else 'no'}" in report
    cpu_gap = _NO_CPU[machine.cgroup_version]
    assert (cpu_gap in machine.gaps) == (machine.per_run_cgroups and not machine.tenant_cpu_shares)


def test_a_machine_without_the_cpu_hierarchy_reports_the_gap() -> None:
    strict = {"level": "strict", "running_as_root": True, "seccomp": True, "landlock_abi": 7}
    no_cpu = Probe(**strict, per_run_cgroups=True, tenant_cpu_shares=False)
    assert _gaps(no_cpu) == ["no writable cgroup v1 cpu: no CPU quota per run, no CPU share per tenant"]
    assert _gaps(Probe(**strict, per_run_cgroups=True, tenant_cpu_shares=True)) == []
    assert "tenant CPU shares   no" in format_probe(no_cpu)
    v2_no_cpu = Probe(**strict, cgroup_version=2, per_run_cgroups=True, tenant_cpu_shares=False)
    assert _gaps(v2_no_cpu) == ["no cgroup v2 cpu controller offered: no CPU quota per run, no CPU share per tenant"]
    assert "per-run cgroups     yes (cgroup v2)" in format_probe(v2_no_cpu)
    v2_unwritable = Probe(**strict, cgroup_version=2, per_run_cgroups=False)
    assert "cgroup v2 without a writable memory+pids subtree" in _gaps(v2_unwritable)[0]


def test_doctor_command_prints_the_probe(machine: Probe) -> None:
    from rh_host.cli.doctor import doctor

    result = CliRunner().invoke(doctor, [])
    assert result.exit_code == 0, result.output
    assert "Level used by --isolation auto" in result.output
    assert "sandbox uids        1879048192-1879113727 (one per tenant)" in result.output
    strict = CliRunner().invoke(doctor, ["--isolation", "strict"])
    assert (strict.exit_code == 0) == machine.strict_sandbox_works
