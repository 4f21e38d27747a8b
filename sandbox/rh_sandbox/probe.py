"""What this machine offers for isolation (:func:`probe`), and the level ``auto`` would use there.

``rh-host doctor`` prints :func:`format_probe`; :mod:`rh_sandbox.factory` decides from a probe
which backend an isolation setting gets.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rh_sandbox.errors import SandboxError
from rh_sandbox.guest import confine
from rh_sandbox.linux.bwrap import bwrap_path, bwrap_version, setpriv_path, strict_command
from rh_sandbox.linux.cgroup_backends import machine_cgroups
from rh_sandbox.linux.cgroups import cgroup_v1_controllers
from rh_sandbox.linux.seccomp import seccomp_available
from rh_sandbox.linux.uids import SandboxUids, default_uids
from rh_sandbox.python.runtime import find_interpreter, readable_by_others
from rh_sandbox.types import IsolationLevel

__all__ = ["Probe", "format_probe", "probe", "probe_dict"]

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
    probe_uid: int | None = None  # the uid the probe's sandbox ran as: its own, never a group's
    cgroup_v1_controllers: list[str] = field(default_factory=list)
    cgroup_v2_controllers: list[str] | None = None  # None: no unified hierarchy mounted
    cgroup_v2_kill: bool = False
    cgroup_version: int = 1  # the backend runs get: 2 where /sys/fs/cgroup is the unified hierarchy
    per_run_cgroups: bool = False  # v1: pids + freezer (+ memory, cpu, cpuacct); v2: memory + pids
    tenant_cpu_shares: bool = False  # per-run cgroups and the cpu controller: a CPU weight per group
    seccomp: bool = False
    seccomp_problem: str | None = None
    landlock_abi: int = 0
    interpreter: str | None = None
    interpreter_readable_by_sandbox_uid: bool = False
    interpreter_problem: str | None = None
    sandbox_uids: str = ""  # the range groups' uids come from ("FIRST-LAST")
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


_PROBE_GROUP = "\x00rh-host probe"  # a group the host never passes (see _probe_uid)
_NOBODY = 65534


def _probe_uid(uids: SandboxUids) -> int:
    """The probe's sandbox runs as a uid of the range claimed like a group's, for a group of its own:
    never as a uid some group's sandboxes run as, in this host process or another. With none free
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
    cgroups = machine_cgroups()
    p.cgroup_version = cgroups.version
    p.per_run_cgroups = cgroups.available
    p.tenant_cpu_shares = p.per_run_cgroups and "cpu" in cgroups.controllers
    p.seccomp_problem = seccomp_available()
    p.seccomp = p.seccomp_problem is None
    p.landlock_abi = confine.landlock_abi()
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


_NO_CPU = {
    1: "no writable cgroup v1 cpu: no CPU quota per run, no CPU share per tenant",
    2: "no cgroup v2 cpu controller offered: no CPU quota per run, no CPU share per tenant",
}


def _gaps(p: Probe) -> list[str]:
    gaps = []
    if p.level != IsolationLevel.STRICT.value:
        gaps.append(f"no namespaces: {p.strict_problem}")
    elif not p.running_as_root:
        gaps.append("not running as root: every tenant's sandbox runs as the host's own uid, not one of its own")
    if not p.per_run_cgroups and p.cgroup_version == 2:
        gaps.append(
            "cgroup v2 without a writable memory+pids subtree (run as root, or delegate one):"
            " memory via RLIMIT_AS, processes via RLIMIT_NPROC"
        )
    elif not p.per_run_cgroups:
        gaps.append("no writable cgroup v1 pids+freezer: memory via RLIMIT_AS, processes via RLIMIT_NPROC")
    elif not p.tenant_cpu_shares:
        gaps.append(_NO_CPU[p.cgroup_version])
    if not p.seccomp:
        gaps.append(f"no seccomp filter: {p.seccomp_problem}")
    if p.landlock_abi == 0:
        gaps.append("no Landlock: the mount namespace alone limits file access")
    elif p.landlock_abi < 6:
        gaps.append(f"Landlock ABI {p.landlock_abi} < 6: no signal / abstract-socket scoping")
    return gaps


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _suffix(text: str, when: object) -> str:
    return text if when else ""


def _sandbox_lines(p: Probe) -> list[str]:
    """What the strict sandbox is built from: bubblewrap, setpriv, root, user namespaces."""
    return [
        f"  bubblewrap          {p.bwrap or 'missing'}" + _suffix(f" (version {p.bwrap_version})", p.bwrap_version),
        f"  setpriv             {p.setpriv or 'missing'}",
        f"  running as root     {_yes(p.running_as_root)}",
        f"  user namespaces     {_yes(p.user_namespaces)}",
        f"  strict sandbox      {'works' if p.strict_sandbox_works else 'unavailable: ' + str(p.strict_problem)}",
    ]


def _limit_lines(p: Probe) -> list[str]:
    """What limits and confines a run: cgroups, seccomp, Landlock, the interpreter, the uids."""
    v2 = "not mounted" if p.cgroup_v2_controllers is None else (" ".join(p.cgroup_v2_controllers) or "no controllers")
    readable = f" (readable by the sandbox uids: {_yes(p.interpreter_readable_by_sandbox_uid)})"
    return [
        f"  cgroup v1           {' '.join(p.cgroup_v1_controllers) or 'none writable'}",
        f"  cgroup v2           {v2}" + _suffix(" (cgroup.kill)", p.cgroup_v2_kill),
        f"  per-run cgroups     {_yes(p.per_run_cgroups)}"
        + _suffix(f" (cgroup v{p.cgroup_version})", p.per_run_cgroups),
        f"  tenant CPU shares   {_yes(p.tenant_cpu_shares)}",
        f"  seccomp             {_yes(p.seccomp)}" + _suffix(f" ({p.seccomp_problem})", p.seccomp_problem),
        f"  Landlock            {'ABI ' + str(p.landlock_abi) if p.landlock_abi else 'no'}",
        f"  guest interpreter   {p.interpreter or p.interpreter_problem}" + _suffix(readable, p.interpreter),
        f"  sandbox uids        {p.sandbox_uids} (one per tenant)"
        + _suffix(f"; OVERLAPS {', '.join(p.sandbox_uid_conflicts)}", p.sandbox_uid_conflicts),
    ]


def format_probe(p: Probe) -> str:
    """Human-readable report for ``rh-host doctor``."""
    lines = [
        "Isolation on this machine",
        *_sandbox_lines(p),
        *_limit_lines(p),
        "",
        f"Level used by --isolation auto: {p.level}",
    ]
    lines += [f"  gap: {gap}" for gap in p.gaps] or ["  no known gaps"]
    return "\n".join(lines)


def probe_dict(p: Probe) -> dict:
    """The probe as plain data (``rh-host doctor --json``)."""
    return asdict(p)
