"""From how a child ended to exactly one status. Shared by every process-based runner."""

from __future__ import annotations

import signal
from dataclasses import dataclass

import msgspec

from rh_sandbox._pump import Breach, Exchange
from rh_sandbox.types import RunResult, RunSpec
from rh_sdk.protocol import Encoding, LogRecord, Reply, RunStatus, Usage, decode_reply

__all__ = ["Ending", "classify", "classify_reply", "parse_logs", "run_result"]

_log_decoder = msgspec.json.Decoder(LogRecord)


def parse_logs(data: bytes, truncated: bool = False) -> list[LogRecord]:
    """JSON-line records from stderr; any other line (a print, a C library) becomes a plain record."""
    records: list[LogRecord] = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            records.append(_log_decoder.decode(raw))
        except msgspec.DecodeError:
            records.append(LogRecord(level="INFO", logger="stderr", message=raw.decode("utf-8", "replace")))
    if truncated:
        note = "log output truncated at max_log_kb"
        records.append(LogRecord(level="WARNING", logger="rh.sandbox", message=note))
    return records


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
    reply: Reply | None = None  # ``stdout`` decoded already (by a runner that needed to look)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(end: Ending, encoding: Encoding) -> tuple[RunStatus, Reply | None, str | None]:
    """(status, reply, error). Limits first: a reply written by a run that breached one does not count."""
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
            f"process limit of {end.process_limit} (or its tenant's task total) reached (fork or thread bomb)",
        )
    signum = -end.returncode if end.returncode is not None and end.returncode < 0 else None
    cpu_hit = end.breach is Breach.CPU or signum == signal.SIGXCPU
    if signum == signal.SIGKILL and end.cpu_ms >= end.cpu_limit_ms * 0.95:
        cpu_hit = True  # the hard RLIMIT_CPU follows SIGXCPU with SIGKILL
    if cpu_hit:
        return RunStatus.CPU_LIMIT, None, f"CPU limit of {end.cpu_limit_ms / 1000:g} s reached"
    if end.oom_killed:
        return RunStatus.MEMORY_LIMIT, None, "memory limit reached (killed by the OOM killer)"
    if not end.stdout:
        if signum is not None:
            return RunStatus.CRASHED, None, f"killed by {_signal_name(signum)} without a reply"
        if end.returncode:
            return RunStatus.FAILED, None, f"exited with status {end.returncode} without a reply"
        return RunStatus.PROTOCOL_ERROR, None, "exited without writing a reply"
    if end.reply is not None:
        return classify_reply(end.reply)
    try:
        reply = decode_reply(end.stdout, encoding)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return RunStatus.PROTOCOL_ERROR, None, f"undecodable reply ({len(end.stdout)} bytes): {exc}"
    return classify_reply(reply)


def classify_reply(reply: Reply) -> tuple[RunStatus, Reply | None, str | None]:
    """The status a well-formed reply stands for; every runtime's classifier ends here."""
    if not reply.ran:
        if not reply.ok:
            return RunStatus.PROTOCOL_ERROR, reply, reply.error or "the guest could not decode the invocation"
        return RunStatus.SKIPPED, reply, None
    if reply.ok:
        return RunStatus.OK, reply, None
    if reply.error_type == "MemoryError":
        return RunStatus.MEMORY_LIMIT, reply, reply.error
    return RunStatus.FAILED, reply, reply.error


def run_result(
    spec: RunSpec,
    io: Exchange,
    *,
    returncode: int | None,
    cpu_ms: float,
    peak_kb: int,
    oom_killed: bool,
    isolation: str,
    reply: Reply | None = None,
) -> RunResult:
    """The RunResult of a finished Python guest, whichever process runner measured it."""
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
    )
    status, reply, error = classify(ending, spec.encoding)
    return RunResult(
        status=status,
        reply=reply,
        error=error,
        logs=parse_logs(io.stderr, truncated=io.breach is Breach.LOGS),
        usage=Usage(wall_ms=round(io.wall_s * 1000, 3), cpu_ms=round(cpu_ms, 3), peak_rss_kb=int(peak_kb)),
        isolation=isolation,
        exit_code=returncode,
    )
