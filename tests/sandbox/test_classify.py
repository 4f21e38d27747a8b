"""The status rules, one row each: how a finished child ended -> exactly one status and its error.

Rows are in the order ``classify`` checks them; the first rows' endings also carry a valid reply, so
each one shows that a breached limit wins over what the run wrote.
"""

from __future__ import annotations

import signal
from typing import Any

import msgspec
import pytest

from rh_sandbox._pump import Breach, Exchange
from rh_sandbox.classify import Ending, classify, parse_logs, run_result
from rh_sandbox.decoded import DecodedTooLarge
from rh_sandbox.types import Limits, RunSpec
from rh_sdk.protocol import Reply, RunStatus, encode_reply

OK_REPLY = encode_reply(Reply(ran=True, ok=True, output={"k": 1}), "json")


def ending(**overrides: Any) -> Ending:
    """A child that exited 0 with a valid reply, well within every limit, but for ``overrides``."""
    fields: dict[str, Any] = {
        "stdout": OK_REPLY,
        "breach": None,
        "returncode": 0,
        "cpu_ms": 10.0,
        "cpu_limit_ms": 1000.0,
        "wall_limit_s": 3.0,
        "output_limit_kb": 64,
        "log_limit_kb": 32,
        "process_limit": 8,
    }
    return Ending(**{**fields, **overrides})


def reply(**fields: Any) -> bytes:
    return encode_reply(Reply(**fields), "json")


RULES = [
    # (rule, ending, status, error contains)
    ("reply over max_output_kb", ending(breach=Breach.OUTPUT), RunStatus.OUTPUT_LIMIT, "max_output_kb=64"),
    ("logs over max_log_kb", ending(breach=Breach.LOGS), RunStatus.OUTPUT_LIMIT, "max_log_kb=32"),
    ("wall-clock deadline", ending(breach=Breach.TIMEOUT), RunStatus.TIMEOUT, "wall-clock limit of 3 s"),
    ("fork or thread bomb", ending(breach=Breach.PROCESSES), RunStatus.CRASHED, "process limit of 8 reached"),
    ("CPU time seen by the host", ending(breach=Breach.CPU), RunStatus.CPU_LIMIT, "CPU limit of 1 s"),
    ("SIGXCPU (soft RLIMIT_CPU)", ending(returncode=-signal.SIGXCPU), RunStatus.CPU_LIMIT, "CPU limit of 1 s"),
    (
        "SIGKILL at the CPU limit (hard RLIMIT_CPU)",
        ending(returncode=-signal.SIGKILL, cpu_ms=960.0),
        RunStatus.CPU_LIMIT,
        "CPU limit",
    ),
    ("OOM killer", ending(oom_killed=True, returncode=-signal.SIGKILL), RunStatus.MEMORY_LIMIT, "OOM killer"),
    (
        "killed by a signal, no reply",
        ending(stdout=b"", returncode=-signal.SIGSEGV),
        RunStatus.CRASHED,
        "killed by SIGSEGV",
    ),
    ("non-zero exit, no reply", ending(stdout=b"", returncode=3), RunStatus.FAILED, "exited with status 3"),
    ("clean exit, no reply", ending(stdout=b""), RunStatus.PROTOCOL_ERROR, "without writing a reply"),
    ("undecodable reply", ending(stdout=b"not json"), RunStatus.PROTOCOL_ERROR, "undecodable reply (8 bytes)"),
    (
        "guest could not decode the invocation",
        ending(stdout=reply(ran=False, ok=False, error="bad invocation")),
        RunStatus.PROTOCOL_ERROR,
        "bad invocation",
    ),
    ("handler skipped itself", ending(stdout=reply(ran=False, ok=True)), RunStatus.SKIPPED, None),
    ("handler succeeded", ending(), RunStatus.OK, None),
    (
        "handler raised MemoryError, the host measured memory near the limit",
        ending(
            stdout=reply(ran=True, ok=False, error="MemoryError: big", error_type="MemoryError"),
            memory_measured="250 of 256 MiB",
        ),
        RunStatus.MEMORY_LIMIT,
        "MemoryError at 250 of 256 MiB",
    ),
    (
        "handler raised MemoryError, the host measured little (a claim, not a measure)",
        ending(stdout=reply(ran=True, ok=False, error="MemoryError: big", error_type="MemoryError")),
        RunStatus.FAILED,
        "MemoryError: big",
    ),
    (
        "handler raised",
        ending(stdout=reply(ran=True, ok=False, error="ValueError: no", error_type="ValueError")),
        RunStatus.FAILED,
        "ValueError: no",
    ),
]


REPLY_RULES = {
    "guest could not decode the invocation",
    "handler skipped itself",
    "handler succeeded",
    "handler raised MemoryError, the host measured memory near the limit",
    "handler raised MemoryError, the host measured little (a claim, not a measure)",
    "handler raised",
}


@pytest.mark.parametrize(("rule", "end", "status", "error"), RULES, ids=[row[0] for row in RULES])
def test_status_rule(rule: str, end: Ending, status: RunStatus, error: str | None) -> None:
    got_status, got_reply, got_error = classify(end, "json")
    assert got_status is status, rule
    if error is None:
        assert got_error is None
    else:
        assert got_error is not None and error in got_error
    # the guest's own answer is kept once it decides the status; a run that breached a limit or died
    # has none, whatever it wrote
    assert (got_reply is not None) == (rule in REPLY_RULES)


def test_every_status_has_a_rule() -> None:
    # host_error is the host's own fault (no run came to an end to classify): the pipeline sets it
    assert {row[2] for row in RULES} == set(RunStatus) - {RunStatus.HOST_ERROR}


def test_a_reply_decoded_by_the_runner_is_not_decoded_again() -> None:
    decoded = Reply(ran=True, ok=True, output={"from": "runner"})
    assert classify(ending(stdout=b"garbage", reply=decoded), "json") == (RunStatus.OK, decoded, None)


def test_a_refusal_found_by_the_runner_stands_without_a_second_scan() -> None:
    """The fork server's runner decodes a reply early; when that was refused, classifying keeps the
    verdict (scanning a reply of megabytes again would cost the host its CPU twice)."""
    status, reply, error = classify(ending(reply=DecodedTooLarge("would take more than 5 bytes")), "json")
    assert (status, reply) == (RunStatus.OUTPUT_LIMIT, None) and error is not None and "5 bytes" in error
    malformed = msgspec.DecodeError("truncated")
    assert classify(ending(reply=malformed), "json")[:2] == (RunStatus.PROTOCOL_ERROR, None)


def test_logs_become_records_and_other_lines_plain_ones() -> None:
    data = b'{"level": "ERROR", "message": "boom", "logger": "h"}\nprinted\n\n'
    records = parse_logs(data, truncated=True)
    assert [(r.level, r.logger, r.message) for r in records] == [
        ("ERROR", "h", "boom"),
        ("INFO", "stderr", "printed"),
        ("WARNING", "rh.sandbox", "log output truncated at max_log_kb"),
    ]


def test_run_result_carries_the_measurements() -> None:
    spec = RunSpec(name="h", runtime="python", plugin_dir="/p", entry="m:H", encoding="json", limits=Limits())
    io = Exchange(stdout=OK_REPLY, stderr=b"hello\n", breach=None, wall_s=0.0125)
    result = run_result(spec, io, returncode=0, cpu_ms=4.5, peak_kb=2048, oom_killed=False, isolation="basic")
    assert result.status is RunStatus.OK and result.reply is not None and result.reply.output == {"k": 1}
    assert (result.usage.wall_ms, result.usage.cpu_ms, result.usage.peak_rss_kb) == (12.5, 4.5, 2048)
    assert result.isolation == "basic" and result.exit_code == 0 and result.logs[0].message == "hello"
