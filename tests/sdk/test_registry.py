"""HandlerRegistry: the guide's in-process registry, the unsandboxed reference."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rh_sdk import HandlerRegistry, ResultHandler, RunStatus, get_registry


class Recording(ResultHandler):
    """Appends its name to a shared list when it runs; behaviour set by config."""

    def __init__(self, calls: list[str], config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.calls = calls
        self.errors: list[BaseException] = []

    def name(self) -> str:
        return str(self.config["name"])

    def enabled(self, metadata: dict[str, Any] | None = None) -> bool:
        if self.config.get("enabled_raises"):
            raise RuntimeError("enabled exploded")
        return bool(self.config.get("enabled", True)) and not (metadata or {}).get(f"skip_{self.name()}")

    def handle(self, batch_id: str, results: list[dict[str, Any]], metadata: dict[str, Any]) -> Any:
        self.calls.append(self.name())
        if self.config.get("raises"):
            raise ValueError(f"{self.name()} broke")
        return self.config.get("returns", True)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)


def make(calls: list[str], name: str, priority: int = 100, **config: Any) -> Recording:
    return Recording(calls, {"name": name, "priority": priority, **config})


def test_runs_in_priority_order_whatever_the_registration_order() -> None:
    calls: list[str] = []
    registry = HandlerRegistry()
    for handler in [make(calls, "c", 100), make(calls, "a", 10), make(calls, "b", 50)]:
        registry.register(handler)
    assert registry.process_results("batch", [{"custom_id": "1"}], {}) is True
    assert calls == ["a", "b", "c"]
    assert [o.name for o in registry.last_outcomes] == ["a", "b", "c"]


def test_equal_priorities_run_in_name_order() -> None:
    calls: list[str] = []
    registry = HandlerRegistry()
    registry.register(make(calls, "zeta", 5))
    registry.register(make(calls, "alpha", 5))
    registry.process_results("batch", [], {})
    assert calls == ["alpha", "zeta"]


def test_enabled_false_skips_and_counts_as_success() -> None:
    calls: list[str] = []
    registry = HandlerRegistry()
    registry.register(make(calls, "off", enabled=False))
    registry.register(make(calls, "meta_off"))
    registry.register(make(calls, "on"))
    assert registry.process_results("batch", [], {"skip_meta_off": True}) is True
    assert calls == ["on"]
    statuses = {o.name: o.status for o in registry.last_outcomes}
    assert statuses == {"off": RunStatus.SKIPPED, "meta_off": RunStatus.SKIPPED, "on": RunStatus.OK}


def test_an_exception_does_not_stop_the_others_and_on_error_is_called(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    registry = HandlerRegistry()
    broken = make(calls, "broken", 1, raises=True)
    registry.register(broken)
    registry.register(make(calls, "after", 2))
    with caplog.at_level(logging.ERROR, logger="rh.registry"):
        assert registry.process_results("batch", [], {}) is False
    assert calls == ["broken", "after"]
    assert [type(e) for e in broken.errors] == [ValueError]
    outcomes = {o.name: o for o in registry.last_outcomes}
    assert outcomes["broken"].status is RunStatus.FAILED
    assert outcomes["broken"].error == "ValueError: broken broke"
    assert outcomes["after"].status is RunStatus.OK
    assert any("broken" in r.getMessage() for r in caplog.records)


def test_an_exception_in_enabled_is_a_failure_too() -> None:
    calls: list[str] = []
    registry = HandlerRegistry()
    registry.register(make(calls, "bad_enabled", enabled_raises=True))
    registry.register(make(calls, "good"))
    assert registry.process_results("batch", [], {}) is False
    assert calls == ["good"]
    assert registry.last_outcomes[0].status is RunStatus.FAILED


def test_on_error_raising_is_contained() -> None:
    class Hopeless(ResultHandler):
        def handle(self, batch_id: str, results: list[dict[str, Any]], metadata: dict[str, Any]) -> bool:
            raise RuntimeError("handle")

        def on_error(self, error: Exception) -> None:
            raise RuntimeError("on_error too")

    calls: list[str] = []
    registry = HandlerRegistry()
    registry.register(Hopeless())
    registry.register(make(calls, "survivor", 200))
    assert registry.process_results("batch", [], {}) is False
    assert calls == ["survivor"]


def test_false_and_dict_returns() -> None:
    calls: list[str] = []
    registry = HandlerRegistry()
    registry.register(make(calls, "no", 1, returns=False))
    registry.register(make(calls, "out", 2, returns={"k": 1}))
    assert registry.process_results("batch", [], None) is False  # type: ignore[arg-type]
    no, out = registry.last_outcomes
    assert (no.status, no.error) == (RunStatus.FAILED, "handle() returned False")
    assert (out.status, out.output) == (RunStatus.OK, {"k": 1})


def test_register_refuses_non_handlers_and_unregister_clear_work() -> None:
    registry = HandlerRegistry()
    with pytest.raises(TypeError, match="expected a ResultHandler"):
        registry.register(object())  # type: ignore[arg-type]
    calls: list[str] = []
    registry.register(make(calls, "a"))
    registry.register(make(calls, "b"))
    registry.unregister("a")
    assert [h.name() for h in registry.handlers] == ["b"]
    registry.clear()
    assert registry.handlers == []


def test_get_registry_is_a_singleton() -> None:
    assert get_registry() is get_registry()
    assert isinstance(get_registry(), HandlerRegistry)
