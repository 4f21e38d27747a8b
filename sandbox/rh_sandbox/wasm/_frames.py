"""The host <-> worker protocol: length-prefixed MessagePack frames over a pair of pipes.

One request, one response, strictly alternating; the worker never speaks first except for its
``Ready`` frame. A one-shot check (``--validate``) is sent one frame, the module's bytes, and answers
one ``Verdict``. Kept tiny because it is on the hot path of every dispatch.
"""

from __future__ import annotations

import os

import msgspec

from rh_sandbox.errors import SandboxError
from rh_sandbox.guest.wire import HEADER as _HEADER
from rh_sandbox.guest.wire import frame

__all__ = [
    "FrameError",
    "Ready",
    "Request",
    "Response",
    "Verdict",
    "read_frame",
    "write_frame",
]

MAX_FRAME_BYTES = 1 << 30


class FrameError(SandboxError):
    """The other side closed the pipe or sent something that is not a frame."""


class Request(msgspec.Struct, array_like=True):
    """Run one invocation. ``module`` is sent only the first time a worker sees ``module_hash``."""

    module_hash: str
    module: bytes | None
    payload: bytes
    memory_bytes: int
    fuel: int
    wall_seconds: float
    max_output_bytes: int
    max_log_bytes: int
    egress_socket: str | None = None  # the run's broker socket when the plugin has network grants
    grants: list[str] = []  # its allowed_hosts, host:port
    cpu_seconds: float = 0.0  # the run's CPU limit, host calls included (the worker's CpuClock); 0: fuel only


class Response(msgspec.Struct, array_like=True):
    """How the guest ended, as raw facts; the host classifies.

    outcome: "exit" (``_start`` returned or ``proc_exit``), "trap", "refused" (the module could not be
    loaded or instantiated), or "loaded": the interim frame a worker sends after compiling or loading a
    module it was sent, before the run (and its wall clock) starts.
    """

    outcome: str
    exit_code: int = 0
    trap_code: str | None = None
    message: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_over: bool = False
    stderr_over: bool = False
    fuel_used: int = 0
    memory_bytes: int = 0
    memory_at_limit: bool = False
    cpu_ms: float = 0.0  # the worker process's CPU time during the run (guest code and host calls)
    cpu_over: bool = False  # the worker's CpuClock interrupted the run: its CPU limit was spent


class Ready(msgspec.Struct, array_like=True):
    pid: int
    engine: str


class Verdict(msgspec.Struct, array_like=True):
    """A one-shot check's answer (``--validate``): why the module it was sent is refused, or None."""

    reason: str | None


_encoder = msgspec.msgpack.Encoder()


def write_frame(fd: int, message: msgspec.Struct) -> None:
    body = _encoder.encode(message)
    data = memoryview(frame(body))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_exact(fd: int, size: int) -> bytes:
    """Blocking read of exactly ``size`` bytes; EOF raises :class:`FrameError`."""
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise FrameError("pipe closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> bytes:
    (size,) = _HEADER.unpack(read_exact(fd, _HEADER.size))
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes is too large")
    return read_exact(fd, size)
