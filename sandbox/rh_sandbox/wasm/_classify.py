"""From a worker's raw facts to exactly one status, as docs/wasm-abi.md tabulates.

Limits first: a reply written by a run that breached a limit does not count.
"""

from __future__ import annotations

import msgspec

from rh_sandbox.classify import bounded_reply, classify_reply, parse_logs, too_large  # shared
from rh_sandbox.decoded import DecodedTooLarge
from rh_sandbox.wasm._frames import Response
from rh_sdk.protocol import Encoding, Reply, RunStatus

__all__ = ["classify", "parse_logs"]


# What classify answers: the status, the reply that counts (if any), the error text (if any).
Classified = tuple[RunStatus, Reply | None, str | None]


def classify(resp: Response, encoding: Encoding, *, max_output_kb: int, max_log_kb: int) -> Classified:
    """(status, reply, error) for one finished guest."""
    breach = _limit_breach(resp, max_output_kb=max_output_kb, max_log_kb=max_log_kb)
    if breach is not None:
        return breach
    if resp.outcome == "refused":
        return RunStatus.PROTOCOL_ERROR, None, f"module refused: {resp.message}"
    if resp.outcome == "trap":
        return RunStatus.CRASHED, None, f"trap: {resp.message}"
    return _judge_reply(resp, encoding, max_output_kb)


def _limit_breach(resp: Response, *, max_output_kb: int, max_log_kb: int) -> Classified | None:
    """The verdict of a run that breached a limit, checked in the table's order; None if it breached none."""
    if resp.stdout_over:
        return RunStatus.OUTPUT_LIMIT, None, f"reply exceeded max_output_kb={max_output_kb}"
    if resp.stderr_over:
        return RunStatus.OUTPUT_LIMIT, None, f"log output exceeded max_log_kb={max_log_kb}"
    if resp.outcome == "trap" and resp.trap_code == "OUT_OF_FUEL":
        return RunStatus.CPU_LIMIT, None, f"CPU limit reached: all {resp.fuel_used} units of fuel consumed"
    if resp.cpu_over:  # fuel cannot say how much was used: wasmtime loses the count on an interrupt
        spent = resp.cpu_ms / 1000
        return RunStatus.CPU_LIMIT, None, f"CPU limit reached: {spent:.2f} CPU seconds spent (host calls included)"
    if resp.outcome == "trap" and resp.trap_code == "INTERRUPT":
        return RunStatus.TIMEOUT, None, "wall-clock limit reached (epoch deadline)"
    return _memory_breach(resp)


def _memory_breach(resp: Response) -> Classified | None:
    """A run that failed with its memory at the limit failed of the limit, whatever it says."""
    failed = resp.outcome != "exit" or resp.exit_code != 0 or not resp.stdout
    if failed and resp.memory_at_limit:
        detail = resp.message or f"exit status {resp.exit_code}"
        return RunStatus.MEMORY_LIMIT, None, f"memory limit reached ({resp.memory_bytes} bytes): {detail}"
    return None


def _judge_reply(resp: Response, encoding: Encoding, max_output_kb: int) -> Classified:
    """A guest that exited within its limits: its exit status and its reply decide."""
    reply: Reply | None = None
    if resp.stdout:
        try:
            reply = bounded_reply(resp.stdout, encoding, max_output_kb)
        except DecodedTooLarge as exc:
            return RunStatus.OUTPUT_LIMIT, None, too_large(exc, max_output_kb)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _undecodable(resp, exc)
    if resp.exit_code != 0:
        return RunStatus.FAILED, reply, (reply.error if reply else None) or f"exited with status {resp.exit_code}"
    if reply is None:
        return RunStatus.PROTOCOL_ERROR, None, "exited without writing a reply"
    measured = f"{resp.memory_bytes} bytes, the limit" if resp.memory_at_limit else None
    return classify_reply(reply, memory_measured=measured)


def _undecodable(resp: Response, exc: Exception) -> Classified:
    """A reply that does not decode: the guest's failure if it exited non-zero, else a protocol error."""
    if resp.exit_code != 0:
        return RunStatus.FAILED, None, f"exited with status {resp.exit_code} (undecodable reply)"
    return RunStatus.PROTOCOL_ERROR, None, f"undecodable reply ({len(resp.stdout)} bytes): {exc}"
