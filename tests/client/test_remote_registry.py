"""RemoteRegistry: the guide's Steps 1-3 verbatim (from the guide's copy in tests/sdk/guide) against a
real ``rh-host serve``, with one line changed: ``get_registry()`` becomes ``RemoteRegistry(...)``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rh_testserver import Server, client

from rh_host.client import ApiError, RemoteRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
from seed_guide import guide_steps

pytestmark = pytest.mark.slow

ONE_LINE = "registry = get_registry()"


def test_the_guides_steps_switch_to_a_service_by_one_line(server: Server, key: str, tmp_path: Path) -> None:
    steps = guide_steps()
    (tmp_path / "my_handler.py").write_text(steps[1])  # Step 1: the handler, in a module of its own
    assert steps[2].count(ONE_LINE) == 1
    step2 = steps[2].replace(ONE_LINE, f"registry = RemoteRegistry({server.url!r}, key={key!r})")
    script = "\n".join(
        [
            "from my_handler import MyCustomHandler",
            "from rh_host.client import RemoteRegistry",
            step2,
            steps[3],
            "runs = {h.name: (h.priority, h.status.value) for h in registry.last_outcome.handlers}",
            "print(sorted(runs.items()))",
        ]
    )
    (tmp_path / "batch_server.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, "batch_server.py"], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "Success: True",
        "[('echo_batch', (10, 'ok')), ('my_custom_handler', (50, 'ok'))]",
    ]
    with client(server.url, key) as api:
        config = api.get("/v1/plugins/my_custom_handler/config").json()
        outcome = api.get("/v1/batches/test_batch_001/outcome").json()
    assert config["secrets"] == {"api_key": "********"}  # sealed on the service, never shown
    assert config["config"] == {"endpoint": "https://api.example.com", "priority": 50}
    assert outcome["output"]["echo.metadata"] == {"user_id": "user_123", "project": "test_project"}


FAILING = """
from core.result_handlers.base import ResultHandler


class Refuses(ResultHandler):
    def name(self):
        return "refuses"

    def handle(self, batch_id, results, metadata):
        self.logger.error("refusing %d results", len(results))
        return False
"""


@pytest.fixture
def registry(server: Server, key: str) -> Iterator[RemoteRegistry]:
    with RemoteRegistry(server.url, key, timeout=120) as reg:
        yield reg


def test_process_results_is_false_when_a_handler_fails(registry: RemoteRegistry, tmp_path: Path) -> None:
    (tmp_path / "refuses.py").write_text(FAILING)
    sys.path.insert(0, str(tmp_path))
    try:
        from refuses import Refuses
    finally:
        sys.path.remove(str(tmp_path))
    assert registry.register(Refuses({"priority": 5})) == "refuses"
    results = [{"custom_id": "c", "response": {"status_code": 200, "body": {}}}]
    assert registry.process_results("fails-1", results, {"m": 1}) is False
    assert registry.last_outcome is not None
    statuses = {h.name: h.status for h in registry.last_outcome.handlers}
    assert statuses == {"refuses": "failed", "echo_batch": "ok"}
    # the same batch again: its stored outcome, nothing runs twice
    assert registry.process_results("fails-1", results, {"m": 1}) is False
    assert registry.last_accepted is not None and registry.last_accepted.duplicate


def test_register_a_plugin_directory_and_refuse_a_script_class(registry: RemoteRegistry, server: Server) -> None:
    slow_step = Path(__file__).resolve().parents[1] / "service" / "plugins" / "slow_step"
    assert registry.register(slow_step) == "slow_step"
    assert registry.process_results("dir-1", [{"custom_id": "c", "response": None, "error": "e"}])
    assert {h.name for h in registry.last_outcome.handlers} == {"echo_batch", "slow_step"}  # type: ignore[union-attr]

    from rh_sdk import ResultHandler

    Local = type("Local", (ResultHandler,), {"__module__": "__main__"})
    with pytest.raises(TypeError, match="defined in the running script"):
        registry.register(Local())
    with pytest.raises(ApiError) as refused:
        registry.process_results("bad id!", [{"custom_id": "c", "response": None, "error": "e"}])
    assert refused.value.code == "bad_request"
    with RemoteRegistry(server.url, "rhk_wrong") as stranger, pytest.raises(ApiError) as denied:
        stranger.process_results("x", [{"custom_id": "c", "error": "e"}])
    assert (denied.value.status_code, denied.value.code) == (401, "unauthorized")
