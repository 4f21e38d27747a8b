"""Choosing the isolation level: what this machine offers (``probe``) and the backend for a setting.

The host calls :func:`make_python_backend` with the operator's setting. ``strict`` refuses to start
without the strict sandbox; ``auto`` takes the strongest level available and warns loudly when that
is less than strict; ``basic`` never uses namespaces. ``rh-host doctor`` prints :func:`format_probe`.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from rh_sandbox import _confine
from rh_sandbox.bwrap import bwrap_path, bwrap_version, setpriv_path, strict_command
from rh_sandbox.cgroups import CgroupV1, cgroup_v1_controllers
from rh_sandbox.egress.run import EgressSettings
from rh_sandbox.runtime import find_interpreter, readable_by_others
from rh_sandbox.seccomp import seccomp_available
from rh_sandbox.types import Backend, IsolationLevel, SandboxError
from rh_sandbox.uids import SandboxUids, default_uids

__all__ = ["IsolationSetting", "Probe", "check_isolation", "format_probe", "make_python_backend", "probe"]

IsolationSetting = Literal["auto", "basic", "strict"]
_log = logging.getLogger("rh.sandbox")
_UNIFIED = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


@dataclass
class Probe:
    """What this machine offers for isolation, and the level ``auto`` would use."""

    bwrap: str | None = None  # path
    bwrap_version: str | None = None
    setpriv: str | None = None
    running_as_root: bool = False
    user_namespaces: bool = False  # max_user_namespaces > 0
    strict_sandbox_works: bool = False  # a real setpriv + bwrap run came back as the sandbox uid
    strict_problem: str | None = None
    probe_uid: int | None = None  # the uid the probe's sandbox ran as: its own, never a tenant's
    cgroup_v1_controllers: list[str] = field(default_factory=list)
    cgroup_v2_controllers: list[str] | None = None  # None: no unified hierarchy mounted
    cgroup_v2_kill: bool = False
    per_run_cgroups: bool = False  # what the sandbox uses: v1 pids + freezer (+ memory, cpu, cpuacct)
    tenant_cpu_shares: bool = False  # per-run cgroups and a v1 cpu hierarchy: a CPU weight per tenant
    seccomp: bool = False
    seccomp_problem: str | None = None
    landlock_abi: int = 0
    interpreter: str | None = None
    interpreter_readable_by_sandbox_uid: bool = False
    interpreter_problem: str | None = None
    sandbox_uids: str = ""  # the range tenants' uids come from ("FIRST-LAST")
    sandbox_uid_conflicts: list[str] = field(default_factory=list)  # users, groups, subid ranges in it
    level: str = IsolationLevel.BASIC.value  # what "auto" uses
    gaps: list[str] = field(default_factory=list)  # what the chosen level lacks here


def _user_namespaces() -> bool:
    try:
        return int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
    except (OSError, ValueError):
        return False


def _cgroup_v2() -> tuple[list[str] | None, bool]:
    for root in _UNIFIED:
        controllers = root / "cgroup.controllers"
        if controllers.exists():
            return controllers.read_text().split(), (root / "cgroup.procs").exists() and _has_kill(root)
    return None, False


def _has_kill(root: Path) -> bool:
    return any((d / "cgroup.kill").exists() for d in [root, *list(root.iterdir())[:50]] if d.is_dir())


_PROBE_GROUP = "\x00rh-host probe"  # a group no tenant has (see _probe_uid)
_NOBODY = 65534


def _probe_uid(uids: SandboxUids) -> int:
    """The probe's sandbox runs as a uid of the range claimed like a tenant's, for a group of its own:
    never as a uid some tenant's sandboxes run as, in this host process or another. With none free
    (the range's problems are reported on their own), as ``nobody``: the probe checks the sandbox."""
    try:
        return uids.uid_for(_PROBE_GROUP)
    except SandboxError:
        return _NOBODY


def _try_strict(interpreter: str, uid: int) -> str | None:
    """Run the real strict sandbox once as ``uid``; None when the guest came back as that uid."""
    code = "import os; print(os.getuid())"
    argv = strict_command([interpreter, "-I", "-S", "-c", code], uid=uid, interpreter=interpreter)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run bwrap: {exc}"
    if out.returncode != 0:
        return f"bwrap failed (exit {out.returncode}): {out.stderr.strip()[:300]}"
    if os.geteuid() == 0 and out.stdout.strip() != str(uid):
        return f"sandbox ran as uid {out.stdout.strip()!r}, expected {uid}"
    return None


def probe(uids: SandboxUids | None = None) -> Probe:
    """Inspect this machine (runs the strict sandbox once, ~30 ms, as the uid ``uids`` gives the probe)."""
    uids = uids or default_uids()
    p = Probe(running_as_root=os.geteuid() == 0, user_namespaces=_user_namespaces())
    p.sandbox_uids = str(uids.range)
    p.sandbox_uid_conflicts = uids.conflicts() if p.running_as_root else []
    p.bwrap, p.bwrap_version, p.setpriv = bwrap_path(), bwrap_version(), setpriv_path()
    p.cgroup_v1_controllers = cgroup_v1_controllers()
    p.cgroup_v2_controllers, p.cgroup_v2_kill = _cgroup_v2()
    p.per_run_cgroups = CgroupV1(p.cgroup_v1_controllers).available
    p.tenant_cpu_shares = p.per_run_cgroups and "cpu" in p.cgroup_v1_controllers
    p.seccomp_problem = seccomp_available()
    p.seccomp = p.seccomp_problem is None
    p.landlock_abi = _confine.landlock_abi()
    try:
        p.interpreter = find_interpreter()
        p.interpreter_readable_by_sandbox_uid = readable_by_others(Path(p.interpreter))
    except SandboxError as exc:
        p.interpreter_problem = str(exc)
    p.strict_problem = _strict_problem(p, uids)
    p.strict_sandbox_works = p.strict_problem is None
    p.level = IsolationLevel.STRICT.value if p.strict_sandbox_works else IsolationLevel.BASIC.value
    p.gaps = _gaps(p)
    return p


def _strict_problem(p: Probe, uids: SandboxUids) -> str | None:
    if p.bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    if p.running_as_root and p.setpriv is None:
        return "setpriv (util-linux) is not installed: cannot drop the real uid before bwrap"
    if not p.user_namespaces:
        return "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
    if p.interpreter is None or not p.interpreter_readable_by_sandbox_uid:
        return p.interpreter_problem or f"interpreter {p.interpreter} is not readable by unprivileged uids"
    p.probe_uid = _probe_uid(uids)
    return _try_strict(p.interpreter, p.probe_uid)


def _gaps(p: Probe) -> list[str]:
    gaps = []
    if p.level != IsolationLevel.STRICT.value:
        gaps.append(f"no namespaces: {p.strict_problem}")
    elif not p.running_as_root:
        gaps.append("not running as root: every tenant's sandbox runs as the host's own uid, not one of its own")
    if not p.per_run_cgroups:
        gaps.append("no writable cgroup v1 pids+freezer: memory via RLIMIT_AS, processes via RLIMIT_NPROC")
    elif not p.tenant_cpu_shares:
        gaps.append("no writable cgroup v1 cpu: no CPU quota per run, no CPU share per tenant")
    if not p.seccomp:
        gaps.append(f"no seccomp filter: {p.seccomp_problem}")
    if p.landlock_abi == 0:
        gaps.append("no Landlock: the mount namespace alone limits file access")
    elif p.landlock_abi < 6:
        gaps.append(f"Landlock ABI {p.landlock_abi} < 6: no signal / abstract-socket scoping")
    return gaps


def format_probe(p: Probe) -> str:
    """Human-readable report for ``rh-host doctor``."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    v2 = "not mounted" if p.cgroup_v2_controllers is None else (" ".join(p.cgroup_v2_controllers) or "no controllers")
    lines = [
        "Isolation on this machine",
        f"  bubblewrap          {p.bwrap or 'missing'}" + (f" (version {p.bwrap_version})" if p.bwrap_version else ""),
        f"  setpriv             {p.setpriv or 'missing'}",
        f"  running as root     {yes(p.running_as_root)}",
        f"  user namespaces     {yes(p.user_namespaces)}",
        f"  strict sandbox      {'works' if p.strict_sandbox_works else 'unavailable: ' + str(p.strict_problem)}",
        f"  cgroup v1           {' '.join(p.cgroup_v1_controllers) or 'none writable'}",
        f"  cgroup v2           {v2}" + (" (cgroup.kill)" if p.cgroup_v2_kill else ""),
        f"  per-run cgroups     {yes(p.per_run_cgroups)}",
        f"  tenant CPU shares   {yes(p.tenant_cpu_shares)}",
        f"  seccomp             {yes(p.seccomp)}" + (f" ({p.seccomp_problem})" if p.seccomp_problem else ""),
        f"  Landlock            {'ABI ' + str(p.landlock_abi) if p.landlock_abi else 'no'}",
        f"  guest interpreter   {p.interpreter or p.interpreter_problem}"
        + (f" (readable by the sandbox uids: {yes(p.interpreter_readable_by_sandbox_uid)})" if p.interpreter else ""),
        f"  sandbox uids        {p.sandbox_uids} (one per tenant)"
        + (f"; OVERLAPS {', '.join(p.sandbox_uid_conflicts)}" if p.sandbox_uid_conflicts else ""),
        "",
        f"Level used by --isolation auto: {p.level}",
    ]
    lines += [f"  gap: {gap}" for gap in p.gaps] or ["  no known gaps"]
    return "\n".join(lines)


def probe_dict(p: Probe) -> dict:
    return asdict(p)


def check_isolation(
    isolation: IsolationSetting | str, probed: Probe | None = None, uids: SandboxUids | None = None
) -> Probe | None:
    """The probe the strict level will run on, or None for the basic level; SandboxError when the
    setting cannot be met (``strict`` demanded but unavailable, a sandbox uid range that overlaps a
    user). Logs the degradation of ``auto`` and every gap. ``rh-host serve`` calls it before it
    listens, so that a misconfigured host refuses to start instead of failing its first run."""
    if isolation not in ("auto", "basic", "strict"):
        raise SandboxError(f"unknown isolation setting {isolation!r} (auto, basic or strict)")
    if isolation == "basic":
        return None
    p = probed or probe(uids)
    if not p.strict_sandbox_works:
        if isolation == "strict":
            raise SandboxError(f"isolation 'strict' demanded but unavailable here: {p.strict_problem}")
        _log.warning(
            "ISOLATION DEGRADED: strict sandbox unavailable (%s); running plugins at level 'basic' "
            "(own process, rlimits, cgroups if writable, but no namespaces). Use --isolation strict "
            "to refuse instead.",
            p.strict_problem,
        )
        return None
    if p.sandbox_uid_conflicts:
        raise SandboxError(
            f"sandbox uid range {p.sandbox_uids} overlaps {'; '.join(p.sandbox_uid_conflicts)}: "
            "a sandbox would share a uid with them; choose another range (--sandbox-uids FIRST-LAST)"
        )
    for gap in p.gaps:
        _log.warning("isolation gap: %s", gap)
    return p


def make_python_backend(
    isolation: IsolationSetting | str = "auto",
    *,
    warm: bool = True,
    prefork: int = 1,
    probed: Probe | None = None,
    egress: EgressSettings | None = None,
    uids: SandboxUids | None = None,
    tenant_max_tasks: int | None = None,
) -> Backend:
    """The Python backend for an isolation setting.

    ``strict`` raises :class:`SandboxError` when the strict sandbox is unavailable; ``auto``
    degrades to ``basic`` with a warning on ``rh.sandbox``; ``warm`` picks the fork server
    (strict only; ``prefork`` children wait ready per tenant) over a cold sandbox per run, except for
    runs with network grants, which always get a cold strict sandbox wired to an egress broker under
    ``egress`` (the operator's policy; by default no grant is permitted). The ``basic`` level has
    the host's network and enforces no grant. ``uids``: where each tenant's own uid comes from (a
    range that overlaps a user, group or subordinate-id range is refused wherever strict would run).
    ``tenant_max_tasks``: the most tasks one tenant's runs hold together (its dir's ``pids.max``;
    None: :func:`~rh_sandbox.cgroups.default_tenant_max_tasks`).
    """
    uids = uids or default_uids()
    if check_isolation(isolation, probed, uids) is None:
        from rh_sandbox.process import ProcessBackend

        return ProcessBackend(tenant_max_tasks=tenant_max_tasks)
    from rh_sandbox.strict import StrictProcessBackend

    if warm:
        from rh_sandbox.dispatch import GrantedRunsApart
        from rh_sandbox.forkserver import ForkServerBackend

        return GrantedRunsApart(
            ForkServerBackend(prefork=prefork, uids=uids, tenant_max_tasks=tenant_max_tasks),
            lambda: StrictProcessBackend(egress=egress, uids=uids, tenant_max_tasks=tenant_max_tasks),
        )
    return StrictProcessBackend(egress=egress, uids=uids, tenant_max_tasks=tenant_max_tasks)


def make_wasm_backend(
    isolation: IsolationSetting | str = "auto",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    probed: Probe | None = None,
    egress: EgressSettings | None = None,
    uids: SandboxUids | None = None,
    tenant_max_tasks: int | None = None,
) -> Backend:
    """The WASM backend for an isolation setting, as :func:`make_python_backend` decides it: at the
    strict level each tenant's workers run in a strict sandbox as the tenant's own uid (give both
    backends the same ``uids``: a tenant has one uid), with a compiled-module cache of their own
    under ``cache_dir``; their tasks count against ``tenant_max_tasks`` as the Python runs' do."""
    from rh_sandbox.wasm import WasmBackend

    uids = uids or default_uids()
    if check_isolation(isolation, probed, uids) is None:
        return WasmBackend(cache_dir=cache_dir, egress=egress)
    from rh_sandbox.wasm import StrictWorkers

    egress_root = egress.run_root if egress is not None else None
    workers = StrictWorkers(uids=uids, cache_dir=cache_dir, egress_root=egress_root, tenant_max_tasks=tenant_max_tasks)
    return WasmBackend(sandbox=workers, egress=egress)
