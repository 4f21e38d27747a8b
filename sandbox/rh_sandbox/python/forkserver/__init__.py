"""Warm strict dispatch: a fork server per group, one forked child per invocation.

Steps per run: find (or start) the group's zygote with the plugin dir bound; claim a child it forked
ahead, already in its own cgroup (or fork one now); set that cgroup to the run's limits; hand the
guest ends of the stdio pipes to the child; exchange stdin/stdout/stderr under caps and a deadline
(the same pump as the cold path); kill what is left (cgroup freeze-kill, and the run's PID namespace
through the zygote); measure; classify with the same rules as the cold path.

Who owns what:
  zygote.py       Zygote: the process handle (start in the sandbox, spawn, kill, close)
  child.py        Child: the host's ends of one forked child; ChildState; Preload (what it imports)
  pool.py         WaitingChildren: one zygote's children by state, and what to arm next
  servers.py      Server (a zygote + its pool) and Groups: each group's current server, runs in flight
  run.py          ChildRun: one run in a claimed child, from the request to the RunResult
  upkeep.py       Upkeep: the background thread that arms, promotes and lets go of children
  run_cgroups.py  RunCgroups: run cgroups made per group, emptied ones pooled for reuse
  plugin_dirs.py  PluginDir, and the once-per-dir checks (readable, bytecode)
  backend.py      ForkServerBackend: leases a server, claims a child, runs, lets go

Plugin dirs: a zygote's mount namespace is fixed when it starts, so the plugin dirs of its group are
bound read-only then (``/plugins/<n>``). A run whose dir is not bound (a new plugin, a new version
in a new dir, or a dir replaced by a new inode) starts a new zygote for the group binding the union
of the live dirs; the old one finishes its runs and stops. Files changed in place are seen at once
(a bind is a live view), and the zygote never imports plugin code, so every invocation loads the
current code (a child armed for a plugin imported it before its request, and checks the files it
loaded again at the request: see ``docs/isolation.md``).
"""

from rh_sandbox.python.forkserver.backend import ForkServerBackend
from rh_sandbox.python.forkserver.child import ChildState
from rh_sandbox.python.forkserver.plugin_dirs import PluginDir

__all__ = ["ChildState", "ForkServerBackend", "PluginDir"]
