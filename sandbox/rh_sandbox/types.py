"""What a sandbox run takes and gives back: plain data, shared by every backend.

Units are in the names (``memory_mb``, ``wall_seconds``). Backends know nothing of tenants: the host
passes an opaque ``group`` so that warm processes are never shared between groups.
"""

from __future__ import annotations

import enum
from typing import Literal, Protocol

import msgspec

from rh_sandbox.errors import SandboxError  # re-exported: its home is errors.py
from rh_sdk.protocol import Encoding, LogRecord, Reply, RunStatus, Usage

__all__ = [
    "Backend",
    "IsolationLevel",
    "Limits",
    "RunResult",
    "RunSpec",
    "RunStatus",
    "Runtime",
    "SandboxError",
    "Usage",
]

Runtime = Literal["python", "wasm"]


class IsolationLevel(enum.StrEnum):
    """How strongly a run was isolated; ordered from weakest to strongest."""

    BASIC = "basic"  # own process and session, clean env, scratch cwd, rlimits (+ cgroup when offered)
    STRICT = "strict"  # + namespaces (mount, pid, net, ipc, uts), unprivileged uid, seccomp, Landlock


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-run resource limits, enforced by the host."""

    cpu_seconds: float = 10.0
    memory_mb: int = 256
    wall_seconds: float = 30.0
    max_output_kb: int = 1024  # the reply on stdout
    max_log_kb: int = 1024  # log records on stderr
    max_processes: int = 32
    scratch_mb: int = 64
    max_open_files: int = 256

    def validate(self) -> None:
        for field in self.__struct_fields__:
            if getattr(self, field) <= 0:
                raise ValueError(f"limits.{field} must be positive, got {getattr(self, field)}")


class RunSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One handler to run: where its code is, how to call it, what it may use."""

    name: str
    runtime: Runtime
    plugin_dir: str
    entry: str  # python: "module:Class"; wasm: a file in plugin_dir
    encoding: Encoding = "msgpack"
    limits: Limits = Limits()
    group: str = "default"  # runs of different groups never share a warm process
    version: str = ""  # plugin version: a new one must not reuse state of the old
    allowed_hosts: tuple[str, ...] = ()  # network grants, "host:port" (docs/network-grants.md); none: no network


class RunResult(msgspec.Struct, kw_only=True):
    """How one run ended. A plugin's failure is data here; only a host fault raises."""

    status: RunStatus
    reply: Reply | None = None
    error: str | None = None
    logs: list[LogRecord] = []
    usage: Usage = msgspec.field(default_factory=Usage)
    isolation: str = IsolationLevel.BASIC.value
    exit_code: int | None = None  # negative: killed by that signal
    egress: list[dict] | None = None  # the run's connection log when the host mediated its network grants


class Backend(Protocol):
    """Runs one invocation in isolation. Thread-safe: the pipeline calls ``run`` concurrently."""

    def run(self, spec: RunSpec, payload: bytes) -> RunResult: ...

    def close(self) -> None: ...
