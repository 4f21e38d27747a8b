"""Merging handler runs into one batch outcome: order, success, conflicts."""

from __future__ import annotations

from typing import Any

import pytest

from rh_host.outcome import Conflict, HandlerRun, merge_outcome
from rh_sdk.protocol import RunStatus


def run(name: str, priority: int, status: RunStatus = RunStatus.OK, **output: Any) -> HandlerRun:
    return HandlerRun(name=name, version="1", runtime="python", priority=priority, status=status, output=output)


def test_handlers_are_ordered_by_priority_then_name() -> None:
    outcome = merge_outcome("b", [run("z", 5), run("a", 50), run("b", 5), run("a0", 1)], 3, 12.3456)
    assert [h.name for h in outcome.handlers] == ["a0", "b", "z", "a"]
    assert (outcome.batch_id, outcome.result_count, outcome.duration_ms) == ("b", 3, 12.346)


def test_lowest_priority_wins_a_conflict_and_it_is_listed() -> None:
    outcome = merge_outcome(
        "b", [run("late", 50, total=2, only_late=1), run("early", 10, total=1), run("mid", 20, total=3)], 0, 0
    )
    assert outcome.output == {"total": 1, "only_late": 1}
    assert outcome.conflicts == [Conflict(key="total", winner="early", overridden=["mid", "late"])]


def test_equal_priorities_break_ties_by_name() -> None:
    outcome = merge_outcome("b", [run("beta", 10, k="beta"), run("alpha", 10, k="alpha")], 0, 0)
    assert outcome.output == {"k": "alpha"}
    assert outcome.conflicts == [Conflict(key="k", winner="alpha", overridden=["beta"])]


def test_output_of_a_run_that_did_not_succeed_is_not_merged() -> None:
    outcome = merge_outcome("b", [run("first", 1, RunStatus.FAILED, k=1), run("second", 2, k=2)], 0, 0)
    assert outcome.output == {"k": 2} and outcome.conflicts == []


@pytest.mark.parametrize(
    ("statuses", "success"),
    [
        ([RunStatus.OK, RunStatus.OK], True),
        ([RunStatus.OK, RunStatus.SKIPPED], True),  # skipped counts as success
        ([RunStatus.SKIPPED], True),
        ([], True),
        *[([RunStatus.OK, bad], False) for bad in RunStatus if bad not in (RunStatus.OK, RunStatus.SKIPPED)],
    ],
)
def test_success_is_every_enabled_handler_ok(statuses: list[RunStatus], success: bool) -> None:
    outcome = merge_outcome("b", [run(f"h{i}", i, s) for i, s in enumerate(statuses)], 0, 0)
    assert outcome.success is success


def test_a_host_error_is_never_a_success_and_is_listed() -> None:
    outcome = merge_outcome("b", [run("ran", 1, k=1), run("could_not_start", 2, RunStatus.HOST_ERROR)], 0, 0)
    assert outcome.success is False
    assert [h.name for h in outcome.host_errors()] == ["could_not_start"]
    assert outcome.output == {"k": 1}
