"""A real uid (and gid of the same number) per group: groups' sandboxes never share one.

Namespaces already keep groups apart; the uid is the wall under them. The kernel keys limits and
rights to the real uid wherever namespaces do not reach: RLIMIT_NPROC, inotify instances and
watches, pipe buffer pages, POSIX message queues, and the owner of the user namespace a sandbox
runs in. With one uid for everybody, one group holding 128 inotify instances left none for any
other (measured on this kind of machine, where ``fs.inotify.max_user_instances`` is 128).

The default range, 1879048192-1879113727 (65,536 uids), sits where systemd's uid table says
"unused" (above the container ranges, below 2^31) and no ``useradd`` or subordinate-id default
reaches. A group's uid is stable within a host process (the slot its name hashes to, so another
host process picks the same one for the same group) and never one that a user in the user
database, an ``/etc/subuid`` / ``/etc/subgid`` range or a running process already holds.

Host processes on one machine share the range. A uid handed out is *claimed*: a lock file per uid
(``/run/rh-host/uids/<uid>``, holding the digest of its group) that the allocator keeps a shared
``flock`` on for its life. Another process hands that uid to the same group (joining the claim) and
to no other, even before the first sandbox of the uid has started; a claim ends when its holders
close it or exit (the kernel drops their locks). Allocations take an exclusive lock on
``/run/rh-host/uids/.allocate``, so two processes never claim one free uid for two groups at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import grp
import hashlib
import os
import pwd
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rh_sandbox.errors import SandboxError

__all__ = ["DEFAULT_UIDS", "SandboxUids", "UidRange", "default_uids", "processes_of_uid"]

_DRAGONS = 1 << 31  # uids from here on trip signed-integer bugs in user space (systemd: "hic sunt dracones")
_SYSTEM_MAX = 999  # system users below: never hand those out
_SUBID_FILES = ("/etc/subuid", "/etc/subgid")


@dataclass(frozen=True)
class UidRange:
    """``first`` to ``last`` inclusive; the same numbers are used as gids."""

    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> UidRange:
        """``FIRST-LAST`` (inclusive), e.g. ``1879048192-1879113727``; ValueError names what is wrong."""
        first_text, sep, last_text = text.strip().partition("-")
        try:
            first, last = int(first_text), int(last_text if sep else first_text)
        except ValueError:
            raise ValueError(f"sandbox uid range {text!r}: expected FIRST-LAST, two whole numbers") from None
        return cls(first, last)

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise ValueError(f"sandbox uid range {self}: the first uid is above the last")
        if self.first <= _SYSTEM_MAX or self.last >= _DRAGONS:
            raise ValueError(f"sandbox uid range {self}: must lie within {_SYSTEM_MAX + 1}-{_DRAGONS - 1}")
        if self.first <= 65535 and self.last >= 65534:
            raise ValueError(f"sandbox uid range {self}: must not hold 65534 (nobody) or 65535 (16-bit -1)")

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.first <= uid <= self.last


DEFAULT_UIDS = UidRange(1_879_048_192, 1_879_048_192 + 65_535)


class SandboxUids:
    """Hands each group a uid of ``uid_range`` of its own, for the life of this object. Thread-safe."""

    def __init__(self, uid_range: UidRange = DEFAULT_UIDS) -> None:
        self.range = uid_range
        self._lock = threading.Lock()
        self._by_group: dict[str, int] = {}
        self._taken: set[int] = set()
        self._claims: list[BinaryIO] = []  # this object's claims (see the module docstring): held while it lives

    @staticmethod
    def over(uid_range: UidRange | None) -> SandboxUids:
        """An allocator over the operator's range; for None, the process-wide one over the default."""
        return SandboxUids(uid_range) if uid_range is not None else default_uids()

    def uid_for(self, group: str) -> int:
        """``group``'s uid: the uid another host process claimed for it, else the slot its name hashes
        to or the next one free of claims, users, subordinate ranges and running processes.
        SandboxError once every uid of the range is held."""
        with self._lock:
            uid = self._by_group.get(group)
            if uid is not None:
                return uid
            digest = hashlib.sha256(group.encode()).digest()
            running = _uids_running()
            size = len(self.range)
            start = int.from_bytes(digest[:8], "big") % size
            with _allocating() as claims_dir:
                for step in range(size):
                    uid = self.range.first + (start + step) % size
                    if uid in self._taken or uid in self._reserved:
                        continue
                    claim = _claim(claims_dir, uid, digest.hex().encode(), running=uid in running)
                    if claim is not None:
                        self._claims.append(claim)
                        self._by_group[group] = uid
                        self._taken.add(uid)
                        return uid
        raise SandboxError(
            f"no free sandbox uid in {self.range}: {len(self._by_group)} groups here hold one and the rest "
            "belong to other host processes' groups, users or running processes; widen --sandbox-uids"
        )

    def conflicts(self) -> list[str]:
        """Users, groups and subordinate-id ranges the range overlaps (each would share a sandbox's uid)."""
        found = [f"user {u.pw_name!r} (uid {u.pw_uid})" for u in _users() if u.pw_uid in self.range]
        found += [f"group {g.gr_name!r} (gid {g.gr_gid})" for g in _groups() if g.gr_gid in self.range]
        for path, owner, first, count in _subordinate_ranges():
            if first <= self.range.last and self.range.first <= first + count - 1:
                found.append(f"{path} range of {owner!r} ({first}-{first + count - 1})")
        return found

    @functools.cached_property
    def _reserved(self) -> frozenset[int]:
        """The range's ids a user, group or subordinate range holds (read once: the user database can be slow)."""
        ids = {u.pw_uid for u in _users()} | {g.gr_gid for g in _groups()}
        for _path, _owner, first, count in _subordinate_ranges():
            ids.update(range(max(first, self.range.first), min(first + count, self.range.last + 1)))
        return frozenset(i for i in ids if i in self.range)


def claims_dir() -> Path:
    """Where the uids' claims are: shared by every host process of this user on the machine."""
    if os.geteuid() == 0:
        return Path("/run/rh-host/uids")
    return Path(os.path.expanduser("~/.cache/rh-host/uids"))  # no uid changes without root: bookkeeping only


@contextlib.contextmanager
def _allocating() -> Iterator[Path]:
    """The claims dir, with every other process's allocation held off until the block ends."""
    path = claims_dir()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path / ".allocate", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)


def _claim(path: Path, uid: int, group: bytes, *, running: bool) -> BinaryIO | None:
    """A claim of ``uid`` for ``group`` (its digest), or None when a live claim is another group's,
    or none is and a process runs as the uid. Called holding the allocation lock: only allocations
    take the exclusive lock of a uid's file, so the shared locks of live claims are all it can meet."""
    claim = open(path / str(uid), "a+b")  # noqa: SIM115 (held for the allocator's life)
    try:
        fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a live claim: whose?
        claim.seek(0)
        if claim.read() != group:
            claim.close()
            return None
        fcntl.flock(claim, fcntl.LOCK_SH)  # the same group's in another process: share it
        return claim
    if running:  # no claim, but a process (a user's, or a sandbox a gone host left) runs as it
        claim.close()
        return None
    claim.truncate(0)
    claim.write(group)
    claim.flush()
    fcntl.flock(claim, fcntl.LOCK_SH)  # from exclusive: nobody can take it between (allocation lock)
    return claim


@functools.cache
def default_uids() -> SandboxUids:
    """The process-wide allocator over the default range (backends built without one share it)."""
    return SandboxUids()


def processes_of_uid(uid: int) -> int:
    """How many processes run with real uid ``uid`` now (RLIMIT_NPROC counts them all, across namespaces)."""
    return sum(1 for uids in _process_uids() if uids[0] == uid)


def _uids_running() -> set[int]:
    """Every uid of every process now: a uid with a process is someone's, not handed out."""
    return {uid for uids in _process_uids() for uid in uids}


def _process_uids() -> Iterator[list[int]]:
    """Each process's real, effective, saved and filesystem uids, from ``status``: the owner of
    ``/proc/<pid>`` is root for a process that is not dumpable."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{entry.name}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):
                        yield [int(field) for field in line.split()[1:]]
                        break


def _users() -> list[pwd.struct_passwd]:
    try:
        return pwd.getpwall()
    except OSError:
        return []


def _groups() -> list[grp.struct_group]:
    try:
        return grp.getgrall()
    except OSError:
        return []


def _subordinate_ranges() -> Iterator[tuple[str, str, int, int]]:
    """(file, owner, first, count) of each line of /etc/subuid and /etc/subgid."""
    for path in _SUBID_FILES:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            owner, _, rest = line.strip().partition(":")
            first, _, count = rest.partition(":")
            if first.isdigit() and count.isdigit():
                yield path, owner, int(first), int(count)
