"""Building the backends: one isolation setting in, the host's dispatcher out.

The host calls :func:`make_dispatcher` (or :func:`make_python_backend`, :func:`make_wasm_backend`)
with the operator's setting. ``strict`` refuses to start without the strict sandbox; ``auto`` takes
the strongest level available and warns loudly when that is less than strict; ``basic`` never uses
namespaces. :func:`check_isolation` lets a long-running host refuse to start instead of failing its
first run.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Literal

from rh_sandbox.dispatch import Dispatcher, GrantedRunsApart
from rh_sandbox.egress.run import EgressSettings
from rh_sandbox.errors import SandboxError
from rh_sandbox.linux.uids import SandboxUids, UidRange, default_uids
from rh_sandbox.probe import Probe, probe
from rh_sandbox.python.forkserver import ForkServerBackend
from rh_sandbox.python.process import ProcessBackend
from rh_sandbox.python.strict import StrictProcessBackend
from rh_sandbox.types import Backend

__all__ = [
    "ISOLATION_CHOICES",
    "IsolationSetting",
    "check_isolation",
    "default_wasm_cache_dir",
    "make_dispatcher",
    "make_python_backend",
    "make_wasm_backend",
]

IsolationSetting = Literal["auto", "basic", "strict"]
ISOLATION_CHOICES: tuple[IsolationSetting, ...] = ("auto", "basic", "strict")
_log = logging.getLogger("rh.sandbox")


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
    group_max_tasks: int | None = None,
) -> Backend:
    """The Python backend for an isolation setting.

    ``strict`` raises :class:`SandboxError` when the strict sandbox is unavailable; ``auto``
    degrades to ``basic`` with a warning on ``rh.sandbox``; ``warm`` picks the fork server
    (strict only; ``prefork`` children wait ready per group) over a cold sandbox per run, except for
    runs with network grants, which always get a cold strict sandbox wired to an egress broker under
    ``egress`` (the operator's policy; by default no grant is permitted). The ``basic`` level has
    the host's network and enforces no grant. ``uids``: where each group's own uid comes from (a
    range that overlaps a user, group or subordinate-id range is refused wherever strict would run).
    ``group_max_tasks``: the most tasks one group's runs hold together (its dir's ``pids.max``;
    None: :func:`~rh_sandbox.linux.cgroups.default_group_max_tasks`).
    """
    uids = uids or default_uids()
    if check_isolation(isolation, probed, uids) is None:
        return ProcessBackend(group_max_tasks=group_max_tasks)
    if warm:
        return GrantedRunsApart(
            ForkServerBackend(prefork=prefork, uids=uids, group_max_tasks=group_max_tasks),
            lambda: StrictProcessBackend(egress=egress, uids=uids, group_max_tasks=group_max_tasks),
        )
    return StrictProcessBackend(egress=egress, uids=uids, group_max_tasks=group_max_tasks)


def make_wasm_backend(
    isolation: IsolationSetting | str = "auto",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    probed: Probe | None = None,
    egress: EgressSettings | None = None,
    uids: SandboxUids | None = None,
    group_max_tasks: int | None = None,
) -> Backend:
    """The WASM backend for an isolation setting, as :func:`make_python_backend` decides it: at the
    strict level each group's workers run in a strict sandbox as the group's own uid (give both
    backends the same ``uids``: a group has one uid), with a compiled-module cache of their own
    under ``cache_dir``; their tasks count against ``group_max_tasks`` as the Python runs' do."""
    from rh_sandbox.wasm import WasmBackend  # wasmtime: only once a WASM plugin comes

    uids = uids or default_uids()
    if check_isolation(isolation, probed, uids) is None:
        return WasmBackend(cache_dir=cache_dir, egress=egress)
    from rh_sandbox.wasm import StrictWorkers

    egress_root = egress.run_root if egress is not None else None
    workers = StrictWorkers(uids=uids, cache_dir=cache_dir, egress_root=egress_root, group_max_tasks=group_max_tasks)
    return WasmBackend(sandbox=workers, egress=egress)


def default_wasm_cache_dir() -> Path:
    """Compiled modules survive across runs here (compiling the Zig sample alone takes ~70 ms)."""
    if os.geteuid() == 0:
        return Path("/var/lib/rh-host/wasm-cache")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "rh-host" / "wasm-cache"


def make_dispatcher(
    isolation: IsolationSetting | str = "auto",
    wasm_cache_dir: Path | None = None,
    egress: EgressSettings | None = None,
    sandbox_uids: UidRange | None = None,
    group_max_tasks: int | None = None,
) -> Dispatcher:
    """The host's one backend: a backend per runtime, each built on its first run. ``egress``: the
    operator's policy for plugins' network grants (default: none permitted); ``sandbox_uids``: the
    range each group's own sandbox uid comes from (default: :data:`DEFAULT_UIDS`). Both runtimes
    share one uid allocator: a group's Python and WASM runs have the same uid. ``group_max_tasks``: the
    most tasks one group's runs of both runtimes hold together (None: the default)."""
    uids = SandboxUids.over(sandbox_uids)
    # one probe for both runtimes, on the first run that needs one (each starts a real sandbox)
    machine = functools.cache(lambda: None if isolation == "basic" else probe(uids))
    return Dispatcher(
        {
            "python": lambda: make_python_backend(
                isolation, probed=machine(), egress=egress, uids=uids, group_max_tasks=group_max_tasks
            ),
            "wasm": lambda: make_wasm_backend(
                isolation,
                cache_dir=wasm_cache_dir or default_wasm_cache_dir(),
                probed=machine(),
                egress=egress,
                uids=uids,
                group_max_tasks=group_max_tasks,
            ),
        }
    )
