"""The log budget: a repeated message costs a bounded number of lines per window, and the drop is reported."""

from __future__ import annotations

import logging

import pytest

from rh_host.service.log_budget import LogBudget


@pytest.fixture
def captured() -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("x.y")
    logger.handlers = [ListHandler()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, lines


def test_a_flood_of_one_message_is_cut_and_reported(captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    budget = LogBudget(per_message=5, total=100, window_seconds=60)
    budget.install(logger)
    for i in range(10_000):
        logger.warning("bad request from %s", f"client-{i}")  # one template, many arguments
    logger.warning("something else")
    assert len(lines) == 6 and lines[-1] == "something else"
    budget._window_start -= 61  # the next window
    logger.warning("bad request from %s", "late")
    assert lines[-1] == "bad request from late [log budget: 9995 record(s) dropped in the last window]"


def test_the_total_caps_many_different_messages(captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    LogBudget(per_message=5, total=50, window_seconds=60).install(logger)
    for i in range(1_000):
        logger.error(f"error number {i}")  # distinct templates, as careless code logs them
    assert len(lines) == 50
