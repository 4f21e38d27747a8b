"""ResultHandler: the plugin guide's base class, its config keys, its output convention and its logger."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from rh_sdk import DEFAULT_PRIORITY, ResultHandler
from rh_sdk._handler import interpret_return
from rh_sdk._logs import JsonLineHandler, record_extra


class Counting(ResultHandler):
    def name(self) -> str:
        return "counting"

    def handle(self, batch_id: str, results: list[dict[str, Any]], metadata: dict[str, Any]) -> Any:
        return {"count": len(results)}


def test_config_defaults_to_an_empty_dict_and_is_copied() -> None:
    assert ResultHandler().config == {}
    given = {"api_key": "k"}
    handler = ResultHandler(given)
    handler.config["extra"] = 1
    assert given == {"api_key": "k"}  # the caller's dict is not mutated


def test_base_config_keys() -> None:
    assert DEFAULT_PRIORITY == 100
    assert ResultHandler().priority == 100
    assert ResultHandler({"priority": 5}).priority == 5
    assert ResultHandler({"priority": "7"}).priority == 7
    assert ResultHandler().enabled() is True
    assert ResultHandler({"enabled": False}).enabled({"any": "metadata"}) is False


def test_log_level_config_sets_the_logger_level() -> None:
    class Quiet(ResultHandler):
        pass

    assert Quiet({"log_level": "warning"}).logger.level == logging.WARNING
    assert Quiet({"log_level": logging.ERROR}).logger.level == logging.ERROR
    with pytest.raises(ValueError, match="log_level 'loud' is not a logging level"):
        Quiet({"log_level": "loud"})
    assert isinstance(Quiet().logger, logging.Logger)


def test_name_defaults_to_the_class_name() -> None:
    class MyHandler(ResultHandler):
        pass

    assert MyHandler().name() == "MyHandler"
    assert Counting().name() == "counting"


def test_handle_must_be_implemented() -> None:
    with pytest.raises(NotImplementedError, match="ResultHandler must implement handle"):
        ResultHandler().handle("b", [], {})


def test_a_dict_return_is_output() -> None:
    assert interpret_return(Counting().handle("b", [{}, {}], {})) == (True, {"count": 2}, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, (True, {}, None)),
        (False, (False, {}, "handle() returned False")),
        ({1: "x"}, (True, {"1": "x"}, None)),  # keys become strings: the output crosses the wire
    ],
)
def test_interpret_return(value: Any, expected: tuple[bool, dict[str, Any], str | None]) -> None:
    assert interpret_return(value) == expected


@pytest.mark.parametrize("value", [None, 1, "yes", ["a"]])
def test_interpret_return_refuses_anything_else(value: Any) -> None:
    ok, output, error = interpret_return(value)
    assert ok is False and output == {}
    assert error is not None and type(value).__name__ in error


def test_on_error_logs_with_traceback_and_handler_extra(caplog: pytest.LogCaptureFixture) -> None:
    handler = Counting()
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        error = exc
    with caplog.at_level(logging.ERROR):
        handler.on_error(error)
    [record] = caplog.records
    assert "boom" in record.getMessage()
    assert record.handler == "counting"  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[1] is error


def test_logger_extra_reaches_the_json_line() -> None:
    stream = io.BytesIO()
    handler = Counting()
    handler.logger.addHandler(JsonLineHandler(stream))
    handler.logger.setLevel(logging.INFO)
    try:
        handler.logger.info("processed %d", 3, extra={"batch_id": "b1", "count": 3, "obj": object()})
    finally:
        handler.logger.handlers.clear()
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "processed 3"
    assert record["level"] == "INFO"
    assert record["logger"].endswith("Counting")
    assert record["extra"]["batch_id"] == "b1" and record["extra"]["count"] == 3
    assert record["extra"]["obj"].startswith("<object object")  # unencodable values become their repr
    assert "msg" not in record["extra"] and "args" not in record["extra"]


def test_json_line_carries_the_exception_text() -> None:
    stream = io.BytesIO()
    logger = logging.getLogger("rh.test.exc")
    logger.addHandler(JsonLineHandler(stream))
    try:
        try:
            raise KeyError("missing")
        except KeyError:
            logger.error("failed", exc_info=True)
    finally:
        logger.handlers.clear()
    record = json.loads(stream.getvalue())
    assert "KeyError: 'missing'" in record["exc"]


def test_record_extra_keeps_only_extra_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, "f.py", 1, "m", (), None)
    record.custom_id = "req-1"
    assert record_extra(record) == {"custom_id": "req-1"}
