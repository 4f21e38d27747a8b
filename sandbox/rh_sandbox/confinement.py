"""Which in-guest confinement steps (seccomp, Landlock) this machine supports, decided once.

The host compiles the seccomp filter into the runtime dir (bound as ``/rh``) and probes the
Landlock ABI; the guest (boot script or fork-server child) applies what this says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rh_sandbox import _confine
from rh_sandbox.layout import RUNTIME_MOUNT
from rh_sandbox.runtime import GuestRuntime
from rh_sandbox.seccomp import seccomp_available, write_filter

__all__ = ["Confinement"]

_log = logging.getLogger("rh.sandbox")


@dataclass(frozen=True)
class Confinement:
    seccomp_file: str | None  # the filter's path inside the sandbox, None when seccomp is unavailable
    landlock_abi: int  # 0: no Landlock

    @classmethod
    def detect(cls, runtime: GuestRuntime) -> Confinement:
        seccomp_file = None
        why_not = seccomp_available()
        if why_not is None:
            path = write_filter(runtime.root)
            seccomp_file = f"{RUNTIME_MOUNT}/{path.name}"
        else:
            _log.warning("seccomp disabled: %s", why_not)
        return cls(seccomp_file=seccomp_file, landlock_abi=_confine.landlock_abi())

    def boot_args(self, rules: list[tuple[str, int]]) -> dict:
        """The confinement part of the guest's boot arguments."""
        return {
            "landlock": rules if self.landlock_abi else [],
            "landlock_abi": self.landlock_abi,
            "seccomp": self.seccomp_file,
        }

    def suffix(self, cgroup: bool) -> str:
        """Tags of the ``isolation`` string of a run: what actually confined it."""
        tags = ["cgroup"] if cgroup else []
        if self.seccomp_file:
            tags.append("seccomp")
        if self.landlock_abi:
            tags.append("landlock")
        return "".join("+" + tag for tag in tags)
