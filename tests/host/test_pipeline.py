"""The pipeline over an in-process fake backend: ordering, concurrency, encode-once, fault isolation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from rh_host.manifest import Manifest, Plugin
from rh_host.pipeline import Pipeline, RunEvent
from rh_sandbox import Limits, RunResult, RunSpec, SandboxError
from rh_sdk.protocol import Encoding, Invocation, Reply, ResultLine, RunStatus, encode_invocation

RESULTS = [
    ResultLine(custom_id="r1", id="1", error=None),
    ResultLine(custom_id="r2", id="2", error={"code": "x", "message": "failed"}),
    ResultLine(custom_id="r3", id="3", error="a vLLM error string"),
]

Behaviour = Callable[[RunSpec, bytes], RunResult]


def ok(output: dict[str, Any] | None = None) -> Behaviour:
    return lambda spec, payload: RunResult(status=RunStatus.OK, reply=Reply(ran=True, ok=True, output=output or {}))


class FakeBackend:
    """Runs nothing: records calls and answers what the test scripted for each plugin name."""

    def __init__(self, behaviours: dict[str, Behaviour] | None = None) -> None:
        self.behaviours = behaviours or {}
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.payloads: dict[str, bytes] = {}
        self.specs: dict[str, RunSpec] = {}
        self.running = 0
        self.max_running = 0

    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        with self.lock:
            self.events.append(("start", spec.name))
            self.payloads[spec.name] = payload
            self.specs[spec.name] = spec
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            return self.behaviours.get(spec.name, ok())(spec, payload)
        finally:
            with self.lock:
                self.running -= 1
                self.events.append(("end", spec.name))

    def close(self) -> None:
        pass


def plugin(name: str, priority: int = 100, encoding: Encoding = "msgpack", **config: Any) -> Plugin:
    manifest = Manifest(
        name=name, version="2.0", runtime="python", entry="handler:H", priority=priority, encoding=encoding
    )
    return Plugin(manifest=manifest, directory=f"/plugins/{name}", config=config)


def index(events: list[tuple[str, str]], kind: str, name: str) -> int:
    return events.index((kind, name))


def test_a_later_priority_starts_only_after_the_earlier_ones_end() -> None:
    def slow(spec: RunSpec, payload: bytes) -> RunResult:
        time.sleep(0.2)
        return ok()(spec, payload)

    backend = FakeBackend({"a": slow, "b": slow})
    plugins = [plugin("c", 20), plugin("a", 10), plugin("d", 30), plugin("b", 10)]
    outcome = Pipeline(backend, max_parallel=4).run("batch", RESULTS, {}, plugins)
    events = backend.events
    assert max(index(events, "end", "a"), index(events, "end", "b")) < index(events, "start", "c")
    assert index(events, "end", "c") < index(events, "start", "d")
    assert [h.name for h in outcome.handlers] == ["a", "b", "c", "d"]
    assert outcome.success


def test_equal_priorities_overlap_when_max_parallel_allows() -> None:
    barrier = threading.Barrier(2, timeout=10)

    def meet(spec: RunSpec, payload: bytes) -> RunResult:
        barrier.wait()  # raises BrokenBarrierError unless both runs are in flight at once
        return ok()(spec, payload)

    backend = FakeBackend({"x": meet, "y": meet})
    outcome = Pipeline(backend, max_parallel=2).run("batch", RESULTS, {}, [plugin("x", 5), plugin("y", 5)])
    assert [h.status for h in outcome.handlers] == [RunStatus.OK, RunStatus.OK]
    assert backend.max_running == 2


def test_max_parallel_one_runs_one_at_a_time() -> None:
    def slow(spec: RunSpec, payload: bytes) -> RunResult:
        time.sleep(0.05)
        return ok()(spec, payload)

    backend = FakeBackend({n: slow for n in "pqr"})
    Pipeline(backend, max_parallel=1).run("batch", RESULTS, {}, [plugin(n, 1) for n in "pqr"])
    assert backend.max_running == 1
    assert [e for e in backend.events if e[0] == "start"] == [("start", "p"), ("start", "q"), ("start", "r")]


def test_max_parallel_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_parallel"):
        Pipeline(FakeBackend(), max_parallel=0)


def test_the_batch_is_encoded_once_per_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {"msgpack": 0, "json": 0}
    real = {"msgpack": msgspec.msgpack.encode, "json": msgspec.json.encode}

    def counting(kind: str) -> Callable[..., bytes]:
        def encode(obj: Any, *args: Any, **kwargs: Any) -> bytes:
            if isinstance(obj, list) and obj and isinstance(obj[0], ResultLine):
                calls[kind] += 1
            return real[kind](obj, *args, **kwargs)

        return encode

    monkeypatch.setattr(msgspec.msgpack, "encode", counting("msgpack"))
    monkeypatch.setattr(msgspec.json, "encode", counting("json"))
    backend = FakeBackend()
    plugins = [plugin("m1", 1), plugin("m2", 2), plugin("m3", 2), plugin("j1", 3, "json"), plugin("j2", 4, "json")]
    Pipeline(backend).run("batch", RESULTS, {"user": "u"}, plugins)
    assert calls == {"msgpack": 1, "json": 1}
    assert len(backend.payloads) == 5


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_every_handler_gets_the_same_results_bytes(encoding: Encoding) -> None:
    backend = FakeBackend()
    plugins = [plugin("one", 1, encoding, k=1), plugin("two", 2, encoding, k=2)]
    Pipeline(backend).run("batch-9", RESULTS, {"user": "u"}, plugins)
    results_bytes = (msgspec.json if encoding == "json" else msgspec.msgpack).encode(RESULTS)
    decode = msgspec.json.decode if encoding == "json" else msgspec.msgpack.decode
    for name, k in (("one", 1), ("two", 2)):
        payload = backend.payloads[name]
        assert payload.count(results_bytes) == 1  # spliced verbatim
        invocation = decode(payload, type=Invocation)
        assert (invocation.batch_id, invocation.handler, invocation.config) == ("batch-9", name, {"k": k})
        assert invocation.metadata == {"user": "u"}
        assert invocation.results == RESULTS
        assert backend.specs[name].encoding == encoding
        # exactly the bytes of a fresh encode: only the header (handler, config) differs between handlers
        fresh = Invocation(batch_id="batch-9", handler=name, config={"k": k}, metadata={"user": "u"}, results=RESULTS)
        assert payload == encode_invocation(fresh, encoding)


def test_a_sandbox_fault_is_a_host_error_and_the_others_succeed() -> None:
    def fault(spec: RunSpec, payload: bytes) -> RunResult:
        raise SandboxError("no cgroup for you")

    backend = FakeBackend({"broken": fault, "fine": ok({"a": 1})})
    outcome = Pipeline(backend).run("b", RESULTS, {}, [plugin("broken", 1), plugin("fine", 1), plugin("later", 2)])
    runs = {h.name: h for h in outcome.handlers}
    assert runs["broken"].status is RunStatus.HOST_ERROR  # not the handler's doing: never crashed
    assert runs["broken"].error == "sandbox fault: no cgroup for you"
    assert runs["broken"].isolation == "none (not started)"
    assert runs["fine"].status is RunStatus.OK and runs["later"].status is RunStatus.OK
    assert outcome.output == {"a": 1}
    assert outcome.success is False


def test_an_unexpected_host_fault_is_confined_to_its_run() -> None:
    def disk_full(spec: RunSpec, payload: bytes) -> RunResult:
        raise OSError(28, "No space left on device")

    backend = FakeBackend({"unlucky": disk_full, "fine": ok({"a": 1})})
    outcome = Pipeline(backend).run("b", RESULTS, {}, [plugin("unlucky", 1), plugin("fine", 2)])
    runs = {h.name: h for h in outcome.handlers}
    assert runs["unlucky"].status is RunStatus.HOST_ERROR
    assert runs["unlucky"].error == "host fault: OSError: [Errno 28] No space left on device"
    assert runs["fine"].status is RunStatus.OK
    assert outcome.success is False


def test_config_enabled_false_skips_without_calling_the_backend() -> None:
    backend = FakeBackend()
    outcome = Pipeline(backend).run("b", RESULTS, {}, [plugin("off", 1, enabled=False), plugin("on", 2)])
    assert list(backend.payloads) == ["on"]
    assert [(h.name, h.status) for h in outcome.handlers] == [("off", RunStatus.SKIPPED), ("on", RunStatus.OK)]
    assert outcome.success


def test_output_only_from_ok_runs_and_run_fields_are_reported() -> None:
    def failed_with_output(spec: RunSpec, payload: bytes) -> RunResult:
        reply = Reply(ran=True, ok=False, output={"k": "bad"}, error="handle() returned False")
        return RunResult(status=RunStatus.FAILED, reply=reply, error=reply.error, isolation="fake")

    backend = FakeBackend({"bad": failed_with_output, "good": ok({"k": "good"})})
    outcome = Pipeline(backend).run("b", RESULTS, {}, [plugin("bad", 1), plugin("good", 2)])
    bad = outcome.handlers[0]
    assert (bad.status, bad.output, bad.error, bad.isolation) == (
        RunStatus.FAILED, {}, "handle() returned False", "fake"
    )  # fmt: skip
    assert (bad.version, bad.runtime, bad.priority) == ("2.0", "python", 1)
    assert outcome.output == {"k": "good"} and outcome.result_count == 3


def test_limits_for_and_group_reach_the_backend() -> None:
    backend = FakeBackend()
    Pipeline(backend).run(
        "b", RESULTS, {}, [plugin("p")], group="tenant-7", limits_for=lambda p: Limits(wall_seconds=3)
    )
    assert backend.specs["p"].group == "tenant-7"
    assert backend.specs["p"].limits == Limits(wall_seconds=3)


def test_progress_events_and_a_failing_progress_callback() -> None:
    events: list[RunEvent] = []
    Pipeline(FakeBackend(), progress=events.append).run("b", RESULTS, {}, [plugin("a", 1), plugin("b", 2)])
    assert [(e.plugin, e.index, e.total, e.run is None) for e in events] == [
        ("a", 1, 2, True), ("a", 1, 2, False), ("b", 2, 2, True), ("b", 2, 2, False)
    ]  # fmt: skip

    def explode(event: RunEvent) -> None:
        raise RuntimeError("printer broke")

    outcome = Pipeline(FakeBackend(), progress=explode).run("b", RESULTS, {}, [plugin("a")])
    assert outcome.success
