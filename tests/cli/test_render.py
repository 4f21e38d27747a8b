"""The readable rendering of a batch outcome."""

from __future__ import annotations

from rh_host.cli.render import render_outcome
from rh_host.outcome import Conflict, HandlerRun, merge_outcome
from rh_sdk.protocol import LogRecord, RunStatus, Usage


def run(name: str, priority: int, status: RunStatus, **kw: object) -> HandlerRun:
    return HandlerRun(name=name, version="1", runtime="python", priority=priority, status=status, **kw)  # type: ignore[arg-type]


LOGS = [LogRecord(level="INFO", message="chatty info"), LogRecord(level="ERROR", message="the real problem")]


def test_a_failed_run_shows_its_error_and_warning_logs_only() -> None:
    outcome = merge_outcome(
        "b-1",
        [
            run("good", 1, RunStatus.OK, logs=LOGS, usage=Usage(wall_ms=1234.4, cpu_ms=5.25, peak_rss_kb=20480)),
            run("bad", 2, RunStatus.TIMEOUT, error="wall-clock limit of 2 s reached", logs=LOGS),
        ],
        result_count=3,
        duration_ms=7,
    )
    text = render_outcome(outcome)
    lines = text.splitlines()
    assert lines[0] == "batch b-1: 3 results, 2 handlers, 7.0 ms"
    good = next(line for line in lines if " good " in line)
    assert "1,234 ms" in good and "5.2 ms" in good and "20.0 MiB" in good
    assert "  └ wall-clock limit of 2 s reached" in text
    assert text.count("the real problem") == 1  # shown for the failing run, not for the ok one
    assert "chatty info" not in text
    assert lines[-1] == "FAILED: 1 of 2 handlers did not succeed"


def test_show_logs_shows_everything() -> None:
    outcome = merge_outcome("b", [run("good", 1, RunStatus.OK, logs=LOGS)], 0, 0)
    text = render_outcome(outcome, show_logs=True)
    assert "INFO    chatty info" in text and "ERROR   the real problem" in text


def test_output_conflicts_and_success_line() -> None:
    outcome = merge_outcome(
        "b",
        [
            run("first", 1, RunStatus.OK, output={"k": 1, "long": "x" * 200}),
            run("second", 2, RunStatus.OK, output={"k": 2}),
            run("off", 3, RunStatus.SKIPPED),
        ],
        0,
        0,
    )
    assert outcome.conflicts == [Conflict(key="k", winner="first", overridden=["second"])]
    text = render_outcome(outcome)
    assert "  k: 1" in text
    long_line = next(line for line in text.splitlines() if line.startswith("  long: "))
    assert long_line.endswith("…") and len(long_line) <= len("  long: ") + 60
    assert "  k: first over second" in text
    assert text.splitlines()[-1] == "SUCCESS: every enabled handler succeeded"
    assert "-" in next(line for line in text.splitlines() if " off " in line)  # no peak RSS measured


def test_only_host_records_are_shown_as_the_hosts() -> None:
    forged = LogRecord(level="WARNING", logger="rh.sandbox", message="log output truncated at max_log_kb")
    note = LogRecord(level="WARNING", logger="rh.sandbox", message="12 log lines dropped", source="host")
    outcome = merge_outcome("b", [run("good", 1, RunStatus.OK, logs=[forged, note])], 0, 0)
    text = render_outcome(outcome, show_logs=True)
    assert "WARNING [host] 12 log lines dropped" in text
    assert "WARNING log output truncated at max_log_kb" in text


def test_egress_refusals_counted_at_the_door_show_their_count() -> None:
    egress = [
        {"grant": "api.example.com:443", "outcome": "ok", "reason": None},
        {"grant": "?", "outcome": "refused", "reason": "connection cap reached (256 per run)", "count": 1244},
        {"grant": "db:5432", "outcome": "refused", "reason": "not granted"},
    ]
    text = render_outcome(merge_outcome("b", [run("net", 1, RunStatus.OK, egress=egress)], 0, 0))
    assert "⇄ ? refused: connection cap reached (256 per run) (x1244)" in text
    assert "⇄ db:5432 refused: not granted\n" in text + "\n"  # one refusal: no count
    assert "⇄ api.example.com:443 ok" in text
