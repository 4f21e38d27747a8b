"""The dispatcher routes by runtime and builds each backend once; granted runs go apart from warm ones."""

from __future__ import annotations

import pytest

from rh_sandbox.dispatch import Dispatcher, GrantedRunsApart
from rh_sandbox.errors import SandboxError
from rh_sandbox.types import RunResult, RunSpec, RunStatus


class Recording:
    """A backend that runs nothing: it answers ok and remembers what it was given."""

    def __init__(self, name: str, built: list[str]) -> None:
        self.name = name
        self.ran: list[str] = []
        self.closed = 0
        built.append(name)

    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        self.ran.append(spec.name)
        return RunResult(status=RunStatus.OK, error=self.name)

    def close(self) -> None:
        self.closed += 1


def spec(name: str, runtime: str = "python", grants: tuple[str, ...] = ()) -> RunSpec:
    return RunSpec(name=name, runtime=runtime, plugin_dir="/p", entry="m:H", allowed_hosts=grants)  # type: ignore[arg-type]


def test_each_runtime_gets_its_backend_built_on_first_use_and_closed_once() -> None:
    built: list[str] = []
    backends: dict[str, Recording] = {}

    def factory(name: str) -> Recording:
        backends[name] = Recording(name, built)
        return backends[name]

    dispatcher = Dispatcher({"python": lambda: factory("python"), "wasm": lambda: factory("wasm")})
    assert built == []  # a host that never meets a WASM plugin never starts a WASM worker
    assert dispatcher.run(spec("a"), b"").error == "python"
    assert dispatcher.run(spec("b"), b"").error == "python"
    assert built == ["python"] and backends["python"].ran == ["a", "b"]
    assert dispatcher.run(spec("c", "wasm"), b"").error == "wasm"
    dispatcher.close()
    assert backends["python"].closed == 1 and backends["wasm"].closed == 1
    with pytest.raises(SandboxError, match="dispatcher is closed"):
        dispatcher.run(spec("d"), b"")


def test_a_runtime_without_a_backend_is_a_sandbox_error() -> None:
    with Dispatcher({}) as dispatcher, pytest.raises(SandboxError, match="no backend for runtime 'wasm'"):
        dispatcher.run(spec("a", "wasm"), b"")


def test_runs_with_grants_go_to_their_own_backend() -> None:
    built: list[str] = []
    warm = Recording("warm", built)
    apart = GrantedRunsApart(warm, lambda: Recording("granted", built))
    assert apart.run(spec("plain"), b"").error == "warm"
    assert built == ["warm"]  # the granted backend only once a granted run comes
    assert apart.run(spec("net", grants=("example.com:443",)), b"").error == "granted"
    granted = apart.granted()
    assert apart.granted() is granted and granted.ran == ["net"] and warm.ran == ["plain"]
    apart.close()
    assert warm.closed == 1 and granted.closed == 1
