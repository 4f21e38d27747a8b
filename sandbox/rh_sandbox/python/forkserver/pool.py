"""The children one zygote forked ahead of runs, each in a :class:`ChildState`, and what to arm next:
``prefork`` children for any run, and ``prefork`` for each of the ``preload`` plugins of the group
most recently run with success (imported, with heap warmed for a run the size of that plugin's last)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from rh_sandbox.python.forkserver.child import Child, ChildState, Preload
from rh_sandbox.types import Limits

__all__ = ["ArmOrder", "Claim", "WaitingChildren", "heap_to_warm"]

# A child armed for a plugin warms Python heap for its run's objects: decoding a msgpack invocation
# takes ~4 bytes of heap per byte (1,000 chat completions: 0.55 MB -> ~2.1 MB). Small runs need none;
# the cap bounds what an idle child holds (a run with a lower memory limit discards such a child).
_HEAP_PER_INVOCATION_BYTE = 4
_HEAP_WARM_MIN = 1 << 20
_HEAP_WARM_MAX = 16 << 20
_CLAIMABLE = (ChildState.ARMING, ChildState.READY)


def heap_to_warm(invocation_bytes: int) -> int:
    """How much heap a child armed for a plugin warms, after a run of that plugin this size: what
    decoding such an invocation takes, none below a megabyte, at most ``_HEAP_WARM_MAX``."""
    heap = invocation_bytes * _HEAP_PER_INVOCATION_BYTE
    return 0 if heap < _HEAP_WARM_MIN else min(heap, _HEAP_WARM_MAX)


@dataclass(frozen=True)
class ArmOrder:
    """The next child to arm: for ``preload``'s plugin (None: any run), with its /tmp and warm heap."""

    preload: Preload | None
    scratch_mb: int
    heap_bytes: int


@dataclass
class Claim:
    """What a run took from the pool: a child (None: none fits, fork one), whether it had said it
    waits (its counters were reset then), and the children it made stale, to be killed."""

    child: Child | None
    was_ready: bool = False
    stale: list[Child] = field(default_factory=list)


class WaitingChildren:
    """One zygote's waiting children and the plugins they are armed for. Its lock guards all of it.
    Retired (its zygote replaced): runs may still claim, nothing new is armed. Closed: drained."""

    def __init__(self, prefork: int, preload: int) -> None:
        self.prefork = prefork
        self.preload = preload
        self._lock = threading.Lock()
        self._children: dict[Child, ChildState] = {}  # in the pool, oldest first (TAKEN: gone)
        self._retired = False
        self._scratch_mb = Limits().scratch_mb  # the /tmp size new children mount: the last run's
        # plugins recently run with success, least recent first: each gets children armed for it, which
        # warm this many bytes of heap for the next run (sized from its last invocation)
        self._warm: OrderedDict[Preload, int] = OrderedDict()
        self._unpreloadable: set[tuple[str, str]] = set()  # (plugin dir, entry) whose early import failed

    # ---- arming ---------------------------------------------------------------------------
    def next_to_arm(self) -> ArmOrder | None:
        """What the zygote lacks: a child for any run first, then one per warm plugin; None when it
        has ``prefork`` of each (waiting or on their way), or when the pool is retired."""
        with self._lock:
            if self._retired:
                return None
            if self._count(None) < self.prefork:
                return ArmOrder(None, self._scratch_mb, 0)
            for preload, heap_bytes in self._warm.items():
                if self._count(preload) < self.prefork:
                    return ArmOrder(preload, self._scratch_mb, heap_bytes)
            return None

    def _count(self, preload: Preload | None) -> int:
        return sum(1 for c in self._children if c.preload == preload)

    def add(self, child: Child) -> bool:
        """Take a newly forked child in as ARMING; False (the caller kills it) once retired."""
        with self._lock:
            if self._retired:
                return False
            self._children[child] = ChildState.ARMING
            return True

    def begin_promote(self, child: Child) -> bool:
        """ARMING -> PROMOTING: no run takes it while its counters are reset. False: a run took it, or
        it was discarded, meanwhile."""
        with self._lock:
            if self._children.get(child) is not ChildState.ARMING:
                return False
            self._children[child] = ChildState.PROMOTING
            return True

    def end_promote(self, child: Child, *, ready: bool, zygote_alive: bool = True) -> bool:
        """PROMOTING -> READY (offered to runs, newest last), or out of the pool (False: the caller
        kills it). A child armed for a plugin that never said it waits (its import raised, hung or was
        slow): that plugin is not preloaded again."""
        with self._lock:
            if not ready and child.preload is not None:
                self._warm.pop(child.preload, None)
                self._unpreloadable.add((child.preload.plugin_dir, child.preload.entry))
            promoting = self._children.pop(child, None) is ChildState.PROMOTING
            kept = ready and zygote_alive and promoting and not self._retired
            if kept:
                self._children[child] = ChildState.READY  # the newest ready child: last
            return kept

    def arming(self) -> list[Child]:
        with self._lock:
            return [c for c, state in self._children.items() if state is ChildState.ARMING]

    # ---- runs -----------------------------------------------------------------------------
    def claim(self, scratch_mb: int, preload: Preload | None) -> Claim:
        """A child for a run with a /tmp of ``scratch_mb``: one armed with the run's plugin imported,
        else one armed for any run, else one for any run still arming (it is further along than a
        fork now; the request waits in its socket). Children armed with an older state of the run's
        plugin (edited in place) are stale; when none fits, one of another scratch size is too (room
        for children of this run's size, which are armed from now on)."""
        with self._lock:
            self._scratch_mb = scratch_mb
            waiting = [c for c, state in self._children.items() if state in _CLAIMABLE]
            stale = [c for c in waiting if _outdated(c, preload)]
            fits = [c for c in waiting if c.scratch_mb == scratch_mb and c not in stale]
            child = self._best(fits, preload)
            if child is None:
                stale += [c for c in waiting if c.scratch_mb != scratch_mb][:1]
            claim = Claim(child, child is not None and self._children[child] is ChildState.READY, stale)
            for c in [*stale, *([child] if child is not None else [])]:
                del self._children[c]
            return claim

    def _best(self, fits: list[Child], preload: Preload | None) -> Child | None:
        ready = [c for c in fits if self._children[c] is ChildState.READY]
        if preload is not None:
            for c in ready:
                if c.preload == preload:
                    return c
        for c in [*ready, *fits]:
            if c.preload is None:
                return c
        return None

    def preloadable(self, plugin_dir: str, entry: str) -> bool:
        with self._lock:
            return (plugin_dir, entry) not in self._unpreloadable

    def ran(self, preload: Preload, invocation_bytes: int) -> tuple[bool, list[Child]]:
        """A run of ``preload``'s plugin ended by itself: keep children armed for it, with heap warmed
        for a run of that size. Returns whether there is something new to arm, and the children of the
        least recent plugin beyond ``preload`` (forgotten: the caller kills them)."""
        heap_bytes = heap_to_warm(invocation_bytes)
        with self._lock:
            if self._retired:
                return False, []
            if preload in self._warm:  # the usual case: its children are re-armed since the claim
                self._warm[preload] = heap_bytes  # for children armed from now on
                self._warm.move_to_end(preload)
                return False, []
            for known in [k for k in self._warm if k.same_plugin(preload)]:
                del self._warm[known]  # edited in place since: its children were discarded at claim
            self._warm[preload] = heap_bytes
            stale: list[Child] = []
            while len(self._warm) > self.preload:
                evicted, _ = self._warm.popitem(last=False)
                stale += [c for c, state in self._children.items() if c.preload == evicted and state in _CLAIMABLE]
            for child in stale:
                del self._children[child]
            return True, stale

    # ---- the end --------------------------------------------------------------------------
    def retire(self) -> None:
        with self._lock:
            self._retired = True

    def close(self) -> list[Child]:
        """Retire and hand over every child still in the pool (to be killed with the zygote), but
        one being promoted: its promotion ends by discarding it."""
        with self._lock:
            self._retired = True
            drained = [c for c, state in self._children.items() if state is not ChildState.PROMOTING]
            for child in drained:
                del self._children[child]
            return drained

    def state(self, child: Child) -> ChildState:
        """The child's state; TAKEN once it left the pool (claimed, stale, evicted, drained)."""
        with self._lock:
            return self._children.get(child, ChildState.TAKEN)

    # ---- for tests and metrics ------------------------------------------------------------
    def states(self) -> list[tuple[Child, ChildState]]:
        with self._lock:
            return list(self._children.items())

    def unpreloadable(self) -> set[tuple[str, str]]:
        with self._lock:
            return set(self._unpreloadable)


def _outdated(child: Child, preload: Preload | None) -> bool:
    """Armed with an older state of the run's plugin (edited in place since)."""
    return (
        child.preload is not None
        and preload is not None
        and child.preload.same_plugin(preload)
        and child.preload != preload
    )
