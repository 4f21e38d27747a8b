"""Network grants through the service: the operator's allow-list at upload, the connection log in the run."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from rh_testserver import OPENAI, TEST_PLUGINS, Server, cleanup, outcome, pack, public_tempdir

PLUGIN = TEST_PLUGINS / "net_probe"
MANIFEST = (PLUGIN / "plugin.toml").read_text()


def with_grants(*grants: str) -> bytes:
    listed = ", ".join(f'"{g}"' for g in grants)
    manifest = MANIFEST.replace("allowed_hosts = []", f"allowed_hosts = [{listed}]")
    return pack(PLUGIN, replace={"plugin.toml": manifest.encode()})


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """A service whose operator allows any loopback port (and its internal address) and nothing else."""
    root = public_tempdir("rh-egress-service-")
    env = {"RH_ALLOW_HOSTS": "127.0.0.1:* localhost:*", "RH_ALLOW_INTERNAL": "127.0.0.1:*"}
    srv = Server(root / "data", env=env).start()
    try:
        yield srv
    finally:
        srv.stop()
        cleanup(root)


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"pong to " + conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_upload_beyond_the_allow_list_is_refused_naming_the_grant(server: Server) -> None:
    with server.tenant("grants-refused") as api:
        response = api.post("/v1/plugins", content=with_grants("127.0.0.1:5432", "db.internal:5432"))
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"] == (
            "plugin.toml: field `allowed_hosts`: not permitted by the operator's allow-list: db.internal:5432"
        )
        assert api.get("/v1/plugins").json() == []


def test_a_granted_plugin_reaches_its_host_and_the_run_shows_the_connection(server: Server, echo_port: int) -> None:
    with server.tenant("grants-ok") as api:
        assert api.post("/v1/plugins", content=with_grants(f"localhost:{echo_port}")).status_code == 201
        config = {"config": {"host": "localhost", "port": echo_port}}
        assert api.put("/v1/plugins/net_probe/config", json=config).status_code == 200
        assert api.post("/v1/batches/eg-1", content=OPENAI.read_bytes()).status_code == 202
        result = outcome(api, "eg-1")
        assert result["success"] is True, result
        assert result["output"]["answer"] == "pong to ping"
        detail = api.get("/v1/batches/eg-1/runs/net_probe").json()
        assert [(c["grant"], c["outcome"], c["address"]) for c in detail["egress"]] == [
            (f"localhost:{echo_port}", "ok", "127.0.0.1")
        ]


def test_without_a_grant_the_same_plugin_reaches_nothing(server: Server, echo_port: int) -> None:
    with server.tenant("grants-none") as api:
        assert api.post("/v1/plugins", content=with_grants()).status_code == 201
        config = {"config": {"host": "127.0.0.1", "port": echo_port}}
        assert api.put("/v1/plugins/net_probe/config", json=config).status_code == 200
        assert api.post("/v1/batches/eg-2", content=OPENAI.read_bytes()).status_code == 202
        result = outcome(api, "eg-2")
        assert result["output"]["answer"].startswith("error: [Errno 97] Address family not supported")
        assert api.get("/v1/batches/eg-2/runs/net_probe").json()["egress"] is None
