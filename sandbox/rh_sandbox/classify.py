"""From how a child ended to exactly one status. Shared by every process-based runner."""

from __future__ import annotations

import signal
from dataclasses import dataclass

import msgspec

from rh_sandbox._pump import Breach, Exchange
from rh_sandbox.decoded import DECODED_PER_BYTE, DecodedTooLarge, decode_within
from rh_sandbox.guest_logs import parse_logs
from rh_sandbox.types import RunResult, RunSpec
from rh_sdk.protocol import Encoding, Reply, RunStatus, Usage

__all__ = [
    "Ending",
    "ReplyRefused",
    "bounded_reply",
    "classify",
    "classify_reply",
    "decode_attempt",
    "parse_logs",
    "run_result",
    "too_large",
]

# A MemoryError the guest reports is memory_limit only when the host measured at least this share of
# the limit in use: RLIMIT_AS refuses an allocation before resident memory reaches the limit.
MEMORY_REPORT_SHARE = 0.5


def bounded_reply(data: bytes, encoding: Encoding, max_output_kb: int) -> Reply:
    """The reply in ``data``, decoded within the caps on decoded size and nesting
    (:func:`~rh_sandbox.decoded.decode_within`); raises ``DecodedTooLarge`` or msgspec's errors."""
    return decode_within(data, encoding, DECODED_PER_BYTE * max_output_kb * 1024)


def too_large(exc: DecodedTooLarge, max_output_kb: int) -> str:
    """The error of a reply over a decoded cap, naming the cap."""
    if exc.too_deep:
        return f"reply {exc} (the cap on nesting)"
    return f"reply {exc} (the cap: {DECODED_PER_BYTE} x max_output_kb={max_output_kb})"


ReplyRefused = DecodedTooLarge | msgspec.DecodeError | msgspec.ValidationError
"""Why a reply's bytes did not decode: over a decoded cap, or malformed."""


def decode_attempt(data: bytes, encoding: Encoding, max_output_kb: int) -> Reply | ReplyRefused:
    """:func:`bounded_reply`, with its refusal returned rather than raised, to be kept for ``Ending``."""
    try:
        return bounded_reply(data, encoding, max_output_kb)
    except (DecodedTooLarge, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return exc


@dataclass
class Ending:
    """Everything known about a finished child, gathered by the runner."""

    stdout: bytes
    breach: Breach | None
    returncode: int | None  # negative: killed by that signal
    cpu_ms: float
    cpu_limit_ms: float
    oom_killed: bool = False
    wall_limit_s: float = 0.0
    output_limit_kb: int = 0
    log_limit_kb: int = 0
    process_limit: int = 0
    # ``stdout`` decoded already by a runner that needed to look, or what decoding it raised: the
    # same bytes are not scanned and decoded a second time
    reply: Reply | ReplyRefused | None = None
    memory_measured: str | None = None  # the host measured memory near the limit: what it saw


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_Outcome = tuple[RunStatus, Reply | None, str | None]


def _killing_signal(end: Ending) -> int | None:
    """The signal that killed the child, if one did (a negative return code)."""
    if end.returncode is not None and end.returncode < 0:
        return -end.returncode
    return None


def _cpu_limit_hit(end: Ending) -> bool:
    """The pump saw the CPU time pass its limit, or the kernel's RLIMIT_CPU ended the child."""
    signum = _killing_signal(end)
    if end.breach is Breach.CPU or signum == signal.SIGXCPU:
        return True
    # the hard RLIMIT_CPU follows SIGXCPU with SIGKILL
    return signum == signal.SIGKILL and end.cpu_ms >= end.cpu_limit_ms * 0.95


def _limit_reached(end: Ending) -> _Outcome | None:
    """The status of the limit the run hit, if any; checked before any reply is looked at."""
    if end.breach is Breach.OUTPUT:
        return RunStatus.OUTPUT_LIMIT, None, f"reply exceeded max_output_kb={end.output_limit_kb}"
    if end.breach is Breach.LOGS:
        return RunStatus.OUTPUT_LIMIT, None, f"log output exceeded max_log_kb={end.log_limit_kb}"
    if end.breach is Breach.TIMEOUT:
        return RunStatus.TIMEOUT, None, f"wall-clock limit of {end.wall_limit_s:g} s reached"
    if end.breach is Breach.PROCESSES:
        # no status of its own in the protocol: the run was killed for what it did, like a crash
        return (
            RunStatus.CRASHED,
            None,
            f"process limit of {end.process_limit} reached, or its tenant's task total (fork or thread bomb)",
        )
    if _cpu_limit_hit(end):
        return RunStatus.CPU_LIMIT, None, f"CPU limit of {end.cpu_limit_ms / 1000:g} s reached"
    if end.oom_killed:
        return RunStatus.MEMORY_LIMIT, None, "memory limit reached (killed by the OOM killer)"
    return None


def _without_reply(end: Ending) -> _Outcome:
    """The status of a child that wrote nothing: how it ended says whose fault that was."""
    signum = _killing_signal(end)
    if signum is not None:
        return RunStatus.CRASHED, None, f"killed by {_signal_name(signum)} without a reply"
    if end.returncode:
        return RunStatus.FAILED, None, f"exited with status {end.returncode} without a reply"
    return RunStatus.PROTOCOL_ERROR, None, "exited without writing a reply"


def classify(end: Ending, encoding: Encoding) -> _Outcome:
    """(status, reply, error). Limits first: a reply written by a run that breached one does not count."""
    limit = _limit_reached(end)
    if limit is not None:
        return limit
    if not end.stdout:
        return _without_reply(end)
    reply = end.reply if end.reply is not None else decode_attempt(end.stdout, encoding, end.output_limit_kb)
    if isinstance(reply, DecodedTooLarge):
        return RunStatus.OUTPUT_LIMIT, None, too_large(reply, end.output_limit_kb)
    if isinstance(reply, Exception):
        return RunStatus.PROTOCOL_ERROR, None, f"undecodable reply ({len(end.stdout)} bytes): {reply}"
    return classify_reply(reply, memory_measured=end.memory_measured)


def classify_reply(reply: Reply, *, memory_measured: str | None = None) -> tuple[RunStatus, Reply | None, str | None]:
    """The status a well-formed reply stands for; every runtime's classifier ends here.

    A reply cannot claim a status the host measures: its MemoryError is memory_limit only with
    ``memory_measured`` (what the host measured, in words); otherwise the run failed like any raise."""
    if not reply.ran:
        if not reply.ok:
            return RunStatus.PROTOCOL_ERROR, reply, reply.error or "the guest could not decode the invocation"
        return RunStatus.SKIPPED, reply, None
    if reply.ok:
        return RunStatus.OK, reply, None
    if reply.error_type == "MemoryError" and memory_measured is not None:
        return RunStatus.MEMORY_LIMIT, reply, f"memory limit reached: MemoryError at {memory_measured}"
    return RunStatus.FAILED, reply, reply.error


def _memory_measured(peak_kb: float, memory_mb: int) -> str | None:
    if peak_kb < memory_mb * 1024 * MEMORY_REPORT_SHARE:
        return None
    return f"a measured peak of {peak_kb / 1024:.0f} MiB of the {memory_mb} MiB limit"


def run_result(
    spec: RunSpec,
    io: Exchange,
    *,
    returncode: int | None,
    cpu_ms: float,
    peak_kb: int,
    oom_killed: bool,
    isolation: str,
    reply: Reply | ReplyRefused | None = None,
) -> RunResult:
    """The RunResult of a finished Python guest, whichever process runner measured it; ``reply``: what
    the runner's own decoding of the reply gave, if it tried."""
    limits = spec.limits
    ending = Ending(
        stdout=io.stdout,
        breach=io.breach,
        returncode=returncode,
        cpu_ms=cpu_ms,
        cpu_limit_ms=limits.cpu_seconds * 1000,
        oom_killed=oom_killed,
        wall_limit_s=limits.wall_seconds,
        output_limit_kb=limits.max_output_kb,
        log_limit_kb=limits.max_log_kb,
        process_limit=limits.max_processes,
        reply=reply,
        memory_measured=_memory_measured(peak_kb, limits.memory_mb),
    )
    status, reply, error = classify(ending, spec.encoding)
    return RunResult(
        status=status,
        reply=reply,
        error=error,
        logs=parse_logs(io.stderr, truncated=io.breach is Breach.LOGS, max_log_kb=limits.max_log_kb),
        usage=Usage(wall_ms=round(io.wall_s * 1000, 3), cpu_ms=round(cpu_ms, 3), peak_rss_kb=int(peak_kb)),
        isolation=isolation,
        exit_code=returncode,
    )
