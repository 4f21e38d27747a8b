"""The public surface of rh_sandbox.wasm, worker groups, encodings, log caps and close()."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import wasm_guests as g
from wasm_helpers import RunWat, write_plugin

import rh_sandbox.wasm
from rh_sandbox.types import RunSpec, RunStatus, SandboxError
from rh_sandbox.wasm import WasmBackend


def test_public_api_is_pinned() -> None:
    assert sorted(rh_sandbox.wasm.__all__) == sorted(
        [
            "FUEL_PER_CPU_SECOND",
            "MAX_MODULE_BYTES",
            "CommandWrapper",
            "StrictWorkers",
            "WasmBackend",
            "WasmModuleError",
            "WorkerRuntime",
            "fuel_for",
            "validate_module",
            "worker_command",
        ]
    )
    assert issubclass(rh_sandbox.wasm.WasmModuleError, ValueError)
    assert all(getattr(rh_sandbox.wasm, name) is not None for name in rh_sandbox.wasm.__all__)


def test_msgpack_reply_is_decoded_with_the_plugin_encoding(backend: WasmBackend, tmp_path: Path) -> None:
    reply = msgspec.msgpack.encode({"protocol": 1, "ran": True, "ok": True, "output": {"k": [1, 2]}})
    write_plugin(tmp_path, g.writing(reply))
    spec = RunSpec(name="m", runtime="wasm", plugin_dir=str(tmp_path), entry="handler.wat", encoding="msgpack")
    result = backend.run(spec, b"\x80")
    assert result.status is RunStatus.OK
    assert result.reply is not None and result.reply.output == {"k": [1, 2]}


def test_plain_stderr_lines_become_log_records(run_wat: RunWat) -> None:
    result = run_wat(g.writing(b'{"ran":true,"ok":true}', b'plain text\n{"level":"ERROR","message":"bad"}\n'))
    assert result.status is RunStatus.OK
    assert [(r.level, r.logger, r.message) for r in result.logs] == [
        ("INFO", "stderr", "plain text"),
        ("ERROR", "", "bad"),
    ]


def test_stderr_flood_capped(run_wat: RunWat) -> None:
    result = run_wat(g.STDERR_FLOOD, max_log_kb=8, cpu_seconds=1, wall_seconds=2)
    assert result.status is RunStatus.OUTPUT_LIMIT
    assert "max_log_kb" in (result.error or "")
    assert result.logs[-1].message == "log output truncated at max_log_kb"


def test_two_replies_are_a_protocol_error(run_wat: RunWat) -> None:
    result = run_wat(g.writing(b'{"ran":true,"ok":true}{"ran":true,"ok":true}'))
    assert result.status is RunStatus.PROTOCOL_ERROR


def test_groups_never_share_a_worker(tmp_path: Path) -> None:
    write_plugin(tmp_path, g.replying({"ran": True, "ok": True}))
    with WasmBackend(workers=1) as backend:

        def run(group: str) -> int:
            spec = RunSpec(
                name="g", runtime="wasm", plugin_dir=str(tmp_path), entry="handler.wat", group=group, encoding="json"
            )
            assert backend.run(spec, b"{}").status is RunStatus.OK
            (worker,) = backend._pool.workers()
            assert worker.group == group
            return worker.pid

        first_a = run("tenant-a")
        assert run("tenant-a") == first_a  # warm reuse within a group
        b = run("tenant-b")  # the only slot is taken over: a new process for the other group
        assert b != first_a
        assert run("tenant-a") not in (first_a, b)


def test_close_kills_workers_and_refuses_further_runs(tmp_path: Path) -> None:
    write_plugin(tmp_path, g.replying({"ran": True, "ok": True}))
    spec = RunSpec(name="c", runtime="wasm", plugin_dir=str(tmp_path), entry="handler.wat", encoding="json")
    backend = WasmBackend(workers=2)
    try:
        assert backend.run(spec, b"{}").status is RunStatus.OK
        workers = backend._pool.workers()
    finally:
        backend.close()
    assert workers and not any(w.alive() for w in workers)
    assert not any(w._scratch.exists() for w in workers)  # tmpfs scratch (guest stdout/stderr) removed
    with pytest.raises(SandboxError):
        backend.run(spec, b"{}")


def test_wrap_command_hook_runs_the_worker_through_it(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def wrap(argv: list[str]) -> list[str]:
        seen.append(argv)
        return ["/usr/bin/env", "-i", *argv]  # a real wrapper, as bwrap/setpriv would be

    write_plugin(tmp_path, g.replying({"ran": True, "ok": True}))
    spec = RunSpec(name="w", runtime="wasm", plugin_dir=str(tmp_path), entry="handler.wat", encoding="json")
    with WasmBackend(workers=1, wrap_command=wrap) as backend:
        assert backend.run(spec, b"{}").status is RunStatus.OK
    assert seen and seen[0][1:4] == ["-I", "-m", "rh_sandbox.wasm._worker"]


def test_worker_that_died_while_idle_is_replaced_not_blamed(tmp_path: Path) -> None:
    write_plugin(tmp_path, g.replying({"ran": True, "ok": True}))
    spec = RunSpec(name="i", runtime="wasm", plugin_dir=str(tmp_path), entry="handler.wat", encoding="json")
    with WasmBackend(workers=1) as backend:
        assert backend.run(spec, b"{}").status is RunStatus.OK
        (worker,) = backend._pool.workers()
        worker.signal_kill()
        worker._proc.wait()
        assert backend.run(spec, b"{}").status is RunStatus.OK  # not crashed: the guest never ran there
        (replacement,) = backend._pool.workers()
        assert replacement.pid != worker.pid


@pytest.mark.parametrize("entry", ["/etc/passwd", "../outside.wat", "sub/../../outside.wat"])
def test_entry_outside_the_plugin_dir_is_refused(backend: WasmBackend, tmp_path: Path, entry: str) -> None:
    write_plugin(tmp_path, g.replying({"ran": True, "ok": True}), "outside.wat")
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    spec = RunSpec(name="e", runtime="wasm", plugin_dir=str(plugin), entry=entry, encoding="json")
    result = backend.run(spec, b"{}")
    assert result.status is RunStatus.PROTOCOL_ERROR
    assert "inside the plugin directory" in (result.error or "")
