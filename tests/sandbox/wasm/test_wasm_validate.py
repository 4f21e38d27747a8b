"""validate_module: hostile modules refused with a clear error, within bounded time and memory, at both
levels (at the strict level the check runs where the tenant's runs do: see test_wasm_strict)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import wasm_guests as g

from rh_sandbox.probe import Probe
from rh_sandbox.wasm import StrictWorkers, WasmBackend, WasmModuleError, validate_module

Check = Callable[..., None]


@pytest.fixture(scope="module", params=["basic", "strict"])
def check(request: pytest.FixtureRequest, machine: Probe) -> Iterator[Check]:
    """validate_module as the host's uid (basic) or in a strict sandbox as a tenant's uid (strict)."""
    if request.param == "basic":
        yield validate_module
        return
    if not machine.strict_sandbox_works:
        pytest.skip(f"strict sandbox unavailable here: {machine.strict_problem}")
    workers = StrictWorkers()

    def strict_check(path: Path, **kwargs: object) -> None:
        validate_module(path, launcher=workers, group="tenant-v", **kwargs)  # type: ignore[arg-type]

    yield strict_check
    workers.close()


def _write(tmp_path: Path, source: str | bytes) -> Path:
    path = tmp_path / ("handler.wat" if isinstance(source, str) else "handler.wasm")
    if isinstance(source, str):
        path.write_text(source)
    else:
        path.write_bytes(source)
    return path


def test_valid_module_passes(tmp_path: Path, check: Check) -> None:
    check(_write(tmp_path, g.replying({"ran": True, "ok": True})))


def test_a_module_importing_the_http_functions_passes(tmp_path: Path, check: Check) -> None:
    # its start function even calls rh::http_request: no check has a network, so it gets an error answer
    check(_write(tmp_path, g.NET_START))


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (os.urandom(4096), "not a WebAssembly module"),
        (b"\x00asm\x01\x00\x00\x00" + os.urandom(512), "failed to parse"),
        (g.UNKNOWN_IMPORT, "unknown import env::steal"),
        (g.TRAPPING_START, "start function trapped"),
        (g.SPINNING_START, "start function trapped"),
        (g.HUGE_TABLE, "table minimum size of 10000000 elements exceeds table limits"),
        (g.NO_START, "no exported function `_start`"),
    ],
    ids=[
        "random",
        "random-after-magic",
        "unknown-import",
        "trapping-start",
        "spinning-start",
        "huge-table",
        "no-start",
    ],
)
def test_hostile_module_refused(tmp_path: Path, check: Check, source: str | bytes, needle: str) -> None:
    path = _write(tmp_path, source)
    with pytest.raises(WasmModuleError) as info:
        check(path)
    assert str(info.value).startswith(f"{path}: ")
    assert needle in str(info.value)


def test_a_start_function_blocked_in_a_host_call_is_stopped_at_the_timeout(tmp_path: Path, check: Check) -> None:
    path = _write(tmp_path, g.sleeping_start(60))  # out of fuel's and epochs' reach: only the host's clock
    started = time.monotonic()
    with pytest.raises(WasmModuleError, match=r"took longer than 2 s"):
        check(path, timeout_seconds=2)
    assert time.monotonic() - started < 15


def test_a_start_function_burning_cpu_in_host_calls_is_refused_on_its_cpu(tmp_path: Path, check: Check) -> None:
    path = _write(tmp_path, g.RANDOM_GET_START)  # hardly any fuel: the worker's CPU clock stops it
    started = time.monotonic()
    with pytest.raises(WasmModuleError, match=r"start function trapped: it used over 0.05 CPU seconds"):
        check(path, timeout_seconds=30)
    assert time.monotonic() - started < 15  # not the 30 s timeout


def test_deeply_nested_blocks_refused_within_bounds(tmp_path: Path, check: Check) -> None:
    # A million nested blocks needs about 1 GB and 4 s to compile here; 128 MiB stops it early.
    path = _write(tmp_path, g.nested_blocks(1_000_000))
    started = time.monotonic()
    with pytest.raises(WasmModuleError, match=r"exceeded its resources|took longer"):
        check(path, memory_mb=128, timeout_seconds=30)
    assert time.monotonic() - started < 60


def test_messages_name_the_module_as_asked(tmp_path: Path, check: Check) -> None:
    with pytest.raises(WasmModuleError) as info:
        check(_write(tmp_path, g.TRAPPING_START), name="handler.wat")
    assert str(info.value).startswith("handler.wat: start function trapped")


def test_oversized_module_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.wasm"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    with pytest.raises(WasmModuleError, match="limit"):
        validate_module(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WasmModuleError, match="cannot read"):
        validate_module(tmp_path / "absent.wasm")


def test_one_tenants_checks_take_one_turn_at_a_time(tmp_path: Path) -> None:
    """Tenant a uploads two modules whose checks run out their time, then tenant b one: b's check
    takes the backend's second turn at once instead of waiting behind a's second."""
    path = _write(tmp_path, g.sleeping_start(60))
    finished: list[str] = []
    most = 0

    def check(group: str) -> None:
        with contextlib.suppress(WasmModuleError):
            backend.validate(path, group=group, timeout_seconds=1.5)
        finished.append(group)

    with WasmBackend(concurrent_checks=2, checks_per_group=1) as backend, ThreadPoolExecutor(3) as pool:
        checks = [pool.submit(check, "a"), pool.submit(check, "a")]
        deadline = time.monotonic() + 10
        while _live_checkers() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # a's second check is at its turn: running (a turn per check) or waiting (per group)
        checks.append(pool.submit(check, "b"))
        while not all(c.done() for c in checks):
            most = max(most, _live_checkers())
            time.sleep(0.01)
    assert finished.index("b") < 2, finished  # b did not wait for both of a's
    assert most == 2  # b's alongside one of a's, never more


def test_check_turns_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WasmBackend(checks_per_group=0)


def _live_checkers() -> int:
    """This process's module checkers (basic level: direct children running ``--validate``)."""
    count = 0
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            count += "--validate" in child.cmdline()
    return count


def test_a_backend_runs_at_most_its_concurrent_checks_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, g.sleeping_start(60))
    most = 0
    with WasmBackend(concurrent_checks=1) as backend, ThreadPoolExecutor(3) as pool:
        checks = [pool.submit(backend.validate, path, group=f"t{i}", timeout_seconds=1.5) for i in range(3)]
        while not all(c.done() for c in checks):
            most = max(most, _live_checkers())
            time.sleep(0.01)
        for check in checks:  # each had its full 1.5 s once its turn came, not less for having waited
            with pytest.raises(WasmModuleError, match=r"took longer than 1.5 s"):
                check.result()
    assert most == 1
