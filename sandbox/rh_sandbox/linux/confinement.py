"""Which in-guest confinement steps (seccomp, Landlock) this machine supports, decided once.

The host compiles the seccomp filter into the runtime dir (bound as ``/rh``) and probes the
Landlock ABI; the guest (boot script or fork-server child) applies what this says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rh_sandbox.guest import confine
from rh_sandbox.linux.layout import RUNTIME_MOUNT
from rh_sandbox.linux.seccomp import seccomp_available, write_filter

__all__ = ["Confinement"]

_log = logging.getLogger("rh.sandbox")


class _RuntimeDir(Protocol):
    @property
    def root(self) -> Path: ...  # bound read-only as RUNTIME_MOUNT


@dataclass(frozen=True)
class Confinement:
    seccomp_file: str | None  # the filter's path inside the sandbox, None when seccomp is unavailable
    landlock_abi: int  # 0: no Landlock
    seccomp_net_file: str | None = None  # the filter of runs with network grants (IPv4 allowed)

    @classmethod
    def detect(cls, runtime: _RuntimeDir) -> Confinement:
        seccomp_file = seccomp_net_file = None
        why_not = seccomp_available()
        if why_not is None:
            seccomp_file = f"{RUNTIME_MOUNT}/{write_filter(runtime.root).name}"
            seccomp_net_file = f"{RUNTIME_MOUNT}/{write_filter(runtime.root, allow_network=True).name}"
        else:
            _log.warning("seccomp disabled: %s", why_not)
        return cls(seccomp_file=seccomp_file, landlock_abi=confine.landlock_abi(), seccomp_net_file=seccomp_net_file)

    def boot_args(self, rules: list[tuple[str, int]], connect_ports: list[int] | None = None) -> dict:
        """The confinement part of the guest's boot arguments. ``connect_ports``: a run with network
        grants, whose plugin may create IPv4 sockets and connect to its forwarder's ports."""
        granted = connect_ports is not None
        return {
            "landlock": rules if self.landlock_abi else [],
            "landlock_abi": self.landlock_abi,
            "landlock_connect_ports": sorted(set(connect_ports or [])),
            "seccomp": self.seccomp_net_file if granted else self.seccomp_file,
        }

    def suffix(self, cgroup: bool) -> str:
        """Tags of the ``isolation`` string of a run: what actually confined it."""
        tags = ["cgroup"] if cgroup else []
        if self.seccomp_file:
            tags.append("seccomp")
        if self.landlock_abi:
            tags.append("landlock")
        return "".join("+" + tag for tag in tags)
