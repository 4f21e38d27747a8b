"""An upload is checked before it can go live: its handler is imported and constructed in the tenant's
sandbox (never ``enabled`` or ``handle``); one that does not load is refused with the guest's error,
naming the file and line, and nothing of it is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rh_testserver import OPENAI, TEST_PLUGINS, Server, outcome, pack, public_tempdir, upload

MANIFEST = 'name = "checked"\nversion = "1.0.0"\nruntime = "python"\nentry = "handler:Checked"\n'
GOOD = """from rh_sdk import ResultHandler


class Checked(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"seen": len(results)}
"""


@pytest.fixture(scope="module")
def empty_dir() -> Iterator[Path]:
    path = public_tempdir("rh-upload-checks-")
    yield path
    path.rmdir()


@pytest.fixture
def api(server: Server, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    with server.tenant(f"checks-{request.node.name[5:40]}") as client:  # a tenant of its own per test
        yield client


def archive(empty_dir: Path, handler: str, manifest_extra: str = "") -> bytes:
    return pack(empty_dir, extra={"plugin.toml": (MANIFEST + manifest_extra).encode(), "handler.py": handler.encode()})


def refused(api: httpx.Client, body: bytes) -> str:
    response = api.post("/v1/plugins", content=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "upload_rejected"
    assert api.get("/v1/plugins").json() == []  # nothing stored
    return str(error["message"])


def stored_artifacts(server: Server) -> set[str]:
    return {p.name for p in (server.data_dir / "artifacts").glob("??/*")}


def test_a_syntax_error_is_refused_with_its_file_and_line(server: Server, api: httpx.Client, empty_dir: Path) -> None:
    before = stored_artifacts(server)
    message = refused(api, archive(empty_dir, GOOD.replace("return {", "return {{")))
    assert message.startswith("handler:Checked: the handler does not load (failed): loading handler:Checked"), message
    assert "SyntaxError" in message and "handler.py" in message and "line 6" in message, message
    assert stored_artifacts(server) == before  # the refused files are gone again


def test_a_wrong_class_name_is_refused(api: httpx.Client, empty_dir: Path) -> None:
    message = refused(api, archive(empty_dir, GOOD.replace("class Checked", "class Renamed")))
    assert "Checked" in message and "handler" in message, message


INIT = (
    GOOD
    + """
    def __init__(self, config=None):
        super().__init__(config)
        if self.config.get("mode") not in ("fast", "safe"):
            raise ValueError(f"config.mode must be fast or safe, not {self.config.get('mode')!r}")
"""
)


def test_a_config_the_handler_refuses_is_refused(api: httpx.Client, empty_dir: Path) -> None:
    """A new plugin is only imported (its config is set once it exists); from then on its handler is
    constructed with the config its runs would get: at a config change, and at each new version."""
    assert api.post("/v1/plugins", content=archive(empty_dir, INIT)).status_code == 201
    response = api.put("/v1/plugins/checked/config", json={"config": {"mode": "turbo"}})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "Checked.__init__ raised ValueError: config.mode must be fast or safe, not 'turbo'" in message, message
    assert api.get("/v1/plugins/checked/config").json()["config"] == {}  # nothing stored
    assert api.put("/v1/plugins/checked/config", json={"config": {"mode": "safe"}}).status_code == 200
    stricter = INIT.replace('("fast", "safe")', '("fast",)')
    response = api.post("/v1/plugins", content=archive(empty_dir, stricter, '[config]\nmode = "fast"\n'))
    assert response.status_code == 400, response.text  # the stored config (safe) wins over the default
    assert "not 'safe'" in response.json()["error"]["message"]
    assert [v["seq"] for v in api.get("/v1/plugins/checked").json()["versions"]] == [1]


def test_an_import_that_never_ends_is_refused_within_the_wall_limit(api: httpx.Client, empty_dir: Path) -> None:
    message = refused(api, archive(empty_dir, "while True:\n    pass\n" + GOOD, "\n[limits]\nwall_seconds = 2\n"))
    assert "(timeout)" in message or "(cpu_limit)" in message, message


def test_the_check_never_calls_handle(api: httpx.Client, empty_dir: Path) -> None:
    failing = GOOD.replace('return {"seen": len(results)}', 'raise RuntimeError("handle ran")')
    assert api.post("/v1/plugins", content=archive(empty_dir, failing)).status_code == 201
    assert api.post("/v1/batches/handle-fails", content=OPENAI.read_bytes()).status_code == 202
    result = outcome(api, "handle-fails")
    assert result["handlers"][0]["status"] == "failed" and "handle ran" in result["handlers"][0]["error"]


def test_a_plugin_whose_declared_secret_is_unset_is_only_imported(api: httpx.Client) -> None:
    """secret_echo's __init__ rightly refuses to construct without its api_key, which can only be set
    once the plugin exists: its first upload is imported, not constructed."""
    assert upload(api, TEST_PLUGINS / "secret_echo").status_code == 201
    body = {"config": {"endpoint": "https://example.invalid/x"}, "secrets": {"api_key": "sk-live-123456"}}
    assert api.put("/v1/plugins/secret_echo/config", json=body).status_code == 200
    # with its secret set, a new version is constructed with it, and its errors never show the secret
    strict = (TEST_PLUGINS / "secret_echo" / "handler.py").read_text()
    strict = strict.replace(
        'raise ValueError("api_key is required in config")',
        'raise ValueError("api_key is required in config")\n'
        '        if not self.config["api_key"].startswith("sk-test-"):\n'
        "            raise ValueError(f\"a live key {self.config['api_key']} in a test plugin\")",
    )
    second = pack(TEST_PLUGINS / "secret_echo", replace={"handler.py": strict.encode()})
    response = api.post("/v1/plugins", content=second)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "a live key [redacted] in a test plugin" in message and "sk-live-123456" not in message, message
