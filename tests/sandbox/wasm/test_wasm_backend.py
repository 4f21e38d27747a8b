"""Every status reached by a real module, and every limit enforced, through WasmBackend."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc

import msgspec
import pytest
import wasm_guests as g
from wasm_helpers import RunWat

from rh_sandbox.types import RunStatus
from rh_sdk.protocol import Invocation, encode_invocation


def test_ok_reply_logs_and_usage(run_wat: RunWat) -> None:
    log = {"level": "INFO", "message": "counted", "logger": "guest", "extra": {"n": 3}}
    result = run_wat(g.replying({"ran": True, "ok": True, "output": {"total": 3}}, log))
    assert result.status is RunStatus.OK
    assert result.reply is not None and result.reply.output == {"total": 3}
    assert [(r.level, r.message, r.extra) for r in result.logs] == [("INFO", "counted", {"n": 3})]
    assert result.exit_code == 0
    assert result.usage.fuel is not None and result.usage.fuel > 0
    assert result.usage.peak_rss_kb == 64  # one page of linear memory


def test_guest_receives_the_invocation_bytes_on_stdin(run_wat: RunWat) -> None:
    # ECHO writes its stdin back; a Reply-shaped invocation proves the bytes arrived intact.
    payload = json.dumps({"ran": True, "ok": True, "output": {"batch": "b-1", "unicode": "\u00b0C"}}).encode()
    result = run_wat(g.ECHO, payload=payload)
    assert result.status is RunStatus.OK
    assert result.reply is not None and result.reply.output == {"batch": "b-1", "unicode": "\u00b0C"}


def test_invocation_encoded_by_the_protocol_module_arrives(run_wat: RunWat) -> None:
    inv = Invocation(batch_id="b-7", handler="echo", results=[])
    payload = encode_invocation(inv, "json")
    result = run_wat(g.ECHO, payload=payload)
    # the invocation is not a reply: decoding it as one fails, which is a protocol error
    assert result.status is RunStatus.PROTOCOL_ERROR
    assert msgspec.json.decode(payload)["batch_id"] == "b-7"


def test_reply_not_ok_is_failed(run_wat: RunWat) -> None:
    result = run_wat(g.replying({"ran": True, "ok": False, "error": "too many errors"}))
    assert result.status is RunStatus.FAILED
    assert result.error == "too many errors"


def test_reply_not_ran_is_skipped(run_wat: RunWat) -> None:
    result = run_wat(g.replying({"ran": False, "ok": True}))
    assert result.status is RunStatus.SKIPPED


def test_proc_exit_nonzero_is_failed(run_wat: RunWat) -> None:
    result = run_wat(g.replying({"ran": True, "ok": True}, exit_code=3))
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 3


def test_no_reply_is_protocol_error(run_wat: RunWat) -> None:
    result = run_wat(g.SILENT)
    assert result.status is RunStatus.PROTOCOL_ERROR
    assert "without writing a reply" in (result.error or "")


def test_undecodable_reply_is_protocol_error(run_wat: RunWat) -> None:
    result = run_wat(g.GARBAGE)
    assert result.status is RunStatus.PROTOCOL_ERROR
    assert "undecodable" in (result.error or "")


def test_trap_is_crashed_with_trap_text(run_wat: RunWat) -> None:
    result = run_wat(g.UNREACHABLE)
    assert result.status is RunStatus.CRASHED
    assert "unreachable" in (result.error or "")


def test_infinite_loop_stopped_by_fuel(run_wat: RunWat) -> None:
    result = run_wat(g.SPIN, cpu_seconds=0.05, wall_seconds=60)
    assert result.status is RunStatus.CPU_LIMIT
    if "fuel" in (result.error or ""):  # else a loaded machine's CPU clock came first (test_wasm_cpu.py)
        assert result.usage.fuel == 50_000_000  # the whole budget: 0.05 s * FUEL_PER_CPU_SECOND


def test_infinite_loop_stopped_by_wall_clock(run_wat: RunWat) -> None:
    started = time.monotonic()
    result = run_wat(g.SPIN, cpu_seconds=100_000, wall_seconds=0.3)
    assert result.status is RunStatus.TIMEOUT
    assert time.monotonic() - started < 10  # generous: the epoch advances at the deadline


def test_guest_sleeping_in_poll_oneoff_stopped_at_wall_limit(run_wat: RunWat) -> None:
    started = time.monotonic()
    result = run_wat(g.sleeping(60), wall_seconds=0.5)
    assert result.status is RunStatus.TIMEOUT
    assert "wall-clock" in (result.error or "")
    assert time.monotonic() - started < 10


def test_short_sleep_within_the_wall_limit_is_ok(run_wat: RunWat) -> None:
    result = run_wat(g.sleeping(0.05), wall_seconds=5)
    assert result.status is RunStatus.OK


def test_memory_limit_of_16_mib_respected(run_wat: RunWat) -> None:
    result = run_wat(g.GROW_UNTIL_REFUSED, memory_mb=16)
    assert result.status is RunStatus.MEMORY_LIMIT
    assert result.usage.peak_rss_kb == 16 * 1024  # grew to the limit, and not one page past it


def test_memory_minimum_over_the_limit_is_memory_limit(run_wat: RunWat) -> None:
    result = run_wat(g.BIG_MINIMUM, memory_mb=16)
    assert result.status is RunStatus.MEMORY_LIMIT


def test_stdout_flood_capped(run_wat: RunWat) -> None:
    result = run_wat(g.STDOUT_FLOOD, max_output_kb=16, cpu_seconds=1, wall_seconds=2)
    assert result.status is RunStatus.OUTPUT_LIMIT
    assert result.reply is None


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (b"\x00asm\x01\x00\x00\x00\xff\xff garbage", "invalid module"),
        (g.UNKNOWN_IMPORT, "unknown import env::steal"),
        (g.NO_START, "_start"),
        (g.HUGE_TABLE, "table"),
    ],
)
def test_hostile_module_run_is_refused_as_data(run_wat: RunWat, source: str | bytes, needle: str) -> None:
    result = run_wat(source)
    assert result.status is RunStatus.PROTOCOL_ERROR
    assert needle in (result.error or "")


def test_trapping_start_function_is_crashed(run_wat: RunWat) -> None:
    result = run_wat(g.TRAPPING_START)
    assert result.status is RunStatus.CRASHED


def test_missing_entry_is_refused_as_data(backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rh_sandbox.types import RunSpec

    spec = RunSpec(name="t", runtime="wasm", plugin_dir=str(tmp_path), entry="nope.wasm")
    result = backend.run(spec, b"{}")
    assert result.status is RunStatus.PROTOCOL_ERROR
    assert "nope.wasm" in (result.error or "")


def test_worker_killed_mid_run_is_crashed_and_the_next_run_works(run_wat: RunWat, backend) -> None:  # type: ignore[no-untyped-def]
    killed: list[int] = []

    def kill_busy_worker() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            for worker in backend._pool.workers():
                if worker.group == "victim" and worker.alive():
                    time.sleep(0.3)  # let it enter the sleeping guest
                    worker.signal_kill()
                    killed.append(worker.pid)
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_busy_worker)
    killer.start()
    result = run_wat(g.sleeping(30), group="victim", wall_seconds=30)
    killer.join()
    assert killed
    assert result.status is RunStatus.CRASHED
    assert "SIGKILL" in (result.error or "")
    after = run_wat(g.replying({"ran": True, "ok": True}), group="victim")
    assert after.status is RunStatus.OK
    assert killed[0] not in [w.pid for w in backend._pool.workers()]


def test_concurrent_runs_from_threads(run_wat: RunWat, backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from wasm_helpers import write_plugin

    from rh_sandbox.types import RunSpec

    write_plugin(tmp_path / "c", g.replying({"ran": True, "ok": True, "output": {"x": 1}}))
    spec = RunSpec(name="c", runtime="wasm", plugin_dir=str(tmp_path / "c"), entry="handler.wat", encoding="json")
    statuses: list[RunStatus] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            status = backend.run(spec, b"{}").status
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [RunStatus.OK] * 80


def test_reply_of_empty_maps_is_output_limit_without_being_decoded(run_wat: RunWat) -> None:
    chunks = 70  # 4.2 MB of "{}," within max_output_kb: 1.4 million dicts (~100 MiB) were it decoded
    tracemalloc.start()
    try:
        result = run_wat(g.empty_maps_reply(chunks), max_output_kb=4200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status is RunStatus.OUTPUT_LIMIT, (result.status, result.error)
    assert "host memory once decoded" in (result.error or "")
    assert peak < 6 * chunks * 60_000, f"host peak {peak / 2**20:.0f} MiB"


def test_a_few_empty_maps_still_decode(run_wat: RunWat) -> None:
    result = run_wat(g.empty_maps_reply(1))
    assert result.status is RunStatus.OK, result.error
    assert result.reply is not None and len(result.reply.output["o"]) == 20_001


def test_guest_cannot_claim_memory_limit_or_write_host_records(run_wat: RunWat) -> None:
    note = {"level": "WARNING", "logger": "rh.sandbox", "source": "host", "message": "log output truncated"}
    claim = {"ran": True, "ok": False, "error": "memory limit reached", "error_type": "MemoryError"}
    result = run_wat(g.replying(claim, note))
    assert result.status is RunStatus.FAILED, result.error  # its memory was one page, far from the limit
    assert [(r.logger, r.source) for r in result.logs] == [("rh.sandbox", "guest")]
