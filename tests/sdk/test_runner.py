"""The guest runner, without a sandbox: every plugin mistake becomes exactly one reply."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from rh_sdk.protocol import GuestInvocation, Invocation, Reply, decode_reply, encode_invocation
from rh_sdk.runner import install_seed_alias, load_handler_class, run_invocation

PLUGIN = """
from core.result_handlers.base import ResultHandler

class Good(ResultHandler):
    def handle(self, batch_id, results, metadata):
        print("a stray print")
        self.logger.info("handled", extra={"batch_id": batch_id, "n": len(results)})
        return {"n": len(results), "batch": batch_id}

class NeedsKey(ResultHandler):
    def __init__(self, config=None):
        super().__init__(config)
        if not self.config.get("api_key"):
            raise ValueError("api_key is required in config")
    def handle(self, batch_id, results, metadata):
        return True

class BadEnabled(ResultHandler):
    def enabled(self, metadata=None):
        raise KeyError("flag")

class Skips(ResultHandler):
    def enabled(self, metadata=None):
        return bool((metadata or {}).get("run"))
    def handle(self, batch_id, results, metadata):
        return True

class Raises(ResultHandler):
    seen = []
    def handle(self, batch_id, results, metadata):
        raise RuntimeError("kaput")
    def on_error(self, error):
        Raises.seen.append(error)

class Exits(ResultHandler):
    def handle(self, batch_id, results, metadata):
        raise SystemExit(4)

class Unencodable(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"opaque": object()}

NotAHandler = dict
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "runner_case_plugin.py").write_text(PLUGIN)
    yield tmp_path
    # run_invocation imports in this process: leave no seed alias and no plugin module behind
    for name in [m for m in sys.modules if m == "core" or m.startswith("core.") or m == "runner_case_plugin"]:
        del sys.modules[name]
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def _invocation(**kw: object) -> GuestInvocation:
    base: dict[str, object] = {"batch_id": "b-7", "handler": "h", "results": [{"custom_id": "1"}]}
    return msgspec.convert({**base, **kw}, GuestInvocation)


def _run(plugin_dir: Path, cls: str, **kw: object) -> Reply:
    install_seed_alias()  # the runner does this first; harmless in the test process
    return run_invocation(_invocation(**kw), f"runner_case_plugin:{cls}", str(plugin_dir))


def test_ok_reply_carries_output(plugin_dir: Path) -> None:
    assert _run(plugin_dir, "Good") == Reply(ran=True, ok=True, output={"n": 1, "batch": "b-7"})


def test_init_value_error_is_a_failure_with_its_message(plugin_dir: Path) -> None:
    reply = _run(plugin_dir, "NeedsKey")
    assert (reply.ran, reply.ok, reply.error_type) == (True, False, "ValueError")
    assert reply.error == "NeedsKey.__init__ raised ValueError: api_key is required in config"
    assert _run(plugin_dir, "NeedsKey", config={"api_key": "k"}).ok is True


def test_enabled_raising_and_skipping(plugin_dir: Path) -> None:
    reply = _run(plugin_dir, "BadEnabled")
    assert reply.ok is False and reply.error is not None and "BadEnabled.enabled raised KeyError" in reply.error
    assert _run(plugin_dir, "Skips") == Reply(ran=False, ok=True)
    assert _run(plugin_dir, "Skips", metadata={"run": True}) == Reply(ran=True, ok=True)
    assert _run(plugin_dir, "Good", config={"enabled": False}) == Reply(ran=False, ok=True)


def test_handle_raising_calls_on_error(plugin_dir: Path) -> None:
    reply = _run(plugin_dir, "Raises")
    assert reply.ok is False and reply.error == "Raises.handle raised RuntimeError: kaput"
    module = sys.modules["runner_case_plugin"]
    assert [str(e) for e in module.Raises.seen] == ["kaput"]


def test_sys_exit_in_handle_is_a_failure_not_an_exit(plugin_dir: Path) -> None:
    reply = _run(plugin_dir, "Exits")
    assert reply.ok is False and reply.error == "Exits.handle called sys.exit(4)"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("no_colon", "not of the form module:Class"),
        ("runner_case_plugin:Missing", "has no attribute 'Missing'"),
        ("runner_case_plugin:NotAHandler", "is not a ResultHandler subclass"),
        ("no_such_module_xyz:C", "No module named 'no_such_module_xyz'"),
    ],
)
def test_bad_entries_are_failures(plugin_dir: Path, entry: str, message: str) -> None:
    install_seed_alias()
    with pytest.raises(Exception, match=message):
        load_handler_class(entry, str(plugin_dir))
    reply = run_invocation(_invocation(), entry, str(plugin_dir))
    assert reply.ok is False and reply.error is not None and message in reply.error


def _main(
    plugin_dir: Path, data: bytes, cls: str = "Good", encoding: str = "msgpack"
) -> subprocess.CompletedProcess[bytes]:
    code = textwrap.dedent(
        f"""
        import sys
        from rh_sdk.runner import main
        sys.exit(main("runner_case_plugin:{cls}", {str(plugin_dir)!r}, {encoding!r}))
        """
    )
    return subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60, cwd="/")


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_main_writes_exactly_one_reply_and_prints_go_to_stderr(plugin_dir: Path, encoding: str) -> None:
    data = encode_invocation(Invocation(batch_id="b", handler="h"), encoding)  # type: ignore[arg-type]
    proc = _main(plugin_dir, data, encoding=encoding)
    assert proc.returncode == 0
    assert decode_reply(proc.stdout, encoding) == Reply(ran=True, ok=True, output={"n": 0, "batch": "b"})  # type: ignore[arg-type]
    assert b"a stray print" in proc.stderr
    assert b'"message":"handled"' in proc.stderr and b'"batch_id":"b"' in proc.stderr


def test_main_answers_an_undecodable_invocation(plugin_dir: Path) -> None:
    proc = _main(plugin_dir, b"\xc1 not msgpack")
    reply = decode_reply(proc.stdout)
    assert (reply.ran, reply.ok, reply.error_type) == (False, False, "DecodeError")


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_output_that_cannot_be_encoded_is_a_failure_reply_not_a_crash(plugin_dir: Path, encoding: str) -> None:
    data = encode_invocation(Invocation(batch_id="b", handler="h"), encoding)  # type: ignore[arg-type]
    proc = _main(plugin_dir, data, cls="Unencodable", encoding=encoding)
    assert proc.returncode == 0, proc.stderr
    reply = decode_reply(proc.stdout, encoding)  # type: ignore[arg-type]
    assert (reply.ran, reply.ok, reply.error_type) == (True, False, "EncodeError")
    assert reply.error is not None and reply.error.startswith(
        f"handle() returned output that cannot be encoded as {encoding}"
    )
    assert b"Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("level", "ok", "error"),
    [
        ("debug", True, None),
        (10, True, None),  # a number is a logging level too
        ("verbose", False, "Good.__init__ raised ValueError: log_level 'verbose' is not a logging level"),
    ],
)
def test_log_level_config_never_crashes_the_runner(
    plugin_dir: Path, level: object, ok: bool, error: str | None
) -> None:
    invocation = Invocation(batch_id="b", handler="h", config={"log_level": level})
    proc = _main(plugin_dir, encode_invocation(invocation))
    assert proc.returncode == 0, proc.stderr
    reply = decode_reply(proc.stdout)
    assert reply.ok is ok
    if error is not None:
        assert reply.error is not None and reply.error.startswith(error)


def test_the_runner_imports_a_plugins_vendored_packages(tmp_path: Path) -> None:
    plugin = tmp_path / "vendoring_plugin"
    (plugin / "vendor" / "rh_vendored_dep").mkdir(parents=True)
    (plugin / "vendor" / "rh_vendored_dep" / "__init__.py").write_text("ANSWER = 42\n")
    (plugin / "vendored_case.py").write_text(
        textwrap.dedent(
            """
            import rh_vendored_dep
            from rh_sdk import ResultHandler

            class UsesDep(ResultHandler):
                def handle(self, batch_id, results, metadata):
                    return {"answer": rh_vendored_dep.ANSWER}
            """
        )
    )
    code = textwrap.dedent(
        f"""
        import sys
        from rh_sdk.runner import main
        sys.exit(main("vendored_case:UsesDep", {str(plugin)!r}, "msgpack"))
        """
    )
    data = encode_invocation(Invocation(batch_id="b", handler="h"))
    proc = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60, cwd="/")
    assert decode_reply(proc.stdout) == Reply(ran=True, ok=True, output={"answer": 42}), proc.stderr
