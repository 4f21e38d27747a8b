"""Bad bodies of any shape get a 400 or 413 with a JSON error naming the problem, never a 500."""

from __future__ import annotations

import httpx
import msgspec
import pytest
from rh_testserver import OPENAI, SAMPLE_PLUGINS, Server, upload

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a": ' * 50_000 + "1" + "}" * 50_000


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["message"]


@pytest.fixture(scope="module")
def api(server: Server) -> httpx.Client:
    client = server.tenant("bodies")
    assert upload(client, SAMPLE_PLUGINS[0]).status_code == 201
    return client


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "no result lines: the batch is empty"),
        (b"\n\n", "no result lines: the batch is empty"),
        (b'{"id": "x", "error": {"e": ' + DEEP.encode() + b"}}\n", "body:1: nested deeper than the JSON decoder"),
        (b'{"id": "x", "response": {"status_code": 200, "body": ' + DEEP_OBJECT.encode() + b"}}", "body:1: nested"),
        (
            b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n',
            "this is a batch input file",
        ),
    ],
)
def test_bad_batch_bodies_are_400(api: httpx.Client, body: bytes, message: str) -> None:
    assert message in error_of(api.post("/v1/batches/bad", content=body), 400)
    assert api.get("/v1/batches/bad").status_code == 404  # nothing stored


def test_bad_msgpack_batches_are_400(api: httpx.Client) -> None:
    headers = {"Content-Type": "application/msgpack"}
    assert "empty" in error_of(api.post("/v1/batches/bad", content=b"", headers=headers), 400)
    assert "empty" in error_of(api.post("/v1/batches/bad", content=b"\x90", headers=headers), 400)
    deep = b"\x91" * 100_000 + b"\xc0"
    assert "nested deeper" in error_of(api.post("/v1/batches/bad", content=deep, headers=headers), 400)


def test_deep_metadata_is_400(api: httpx.Client) -> None:
    response = api.post("/v1/batches/meta", content=OPENAI.read_bytes(), params={"metadata": "[" * 5000})
    assert "metadata" in error_of(response, 400)


def test_deep_or_empty_json_bodies_on_other_routes_are_400(server: Server, api: httpx.Client) -> None:
    with server.operator() as op:
        for content in (DEEP, DEEP_OBJECT, ""):
            error_of(op.post("/v1/tenants", content=content, headers={"Content-Type": "application/json"}), 400)
        tenant_id = op.get("/v1/tenants").json()[0]["id"]
        error_of(op.put(f"/v1/tenants/{tenant_id}/quotas", content=DEEP_OBJECT), 400)
    name = "stats_summary"
    error_of(api.put(f"/v1/plugins/{name}/config", content='{"config": ' + DEEP_OBJECT + "}"), 400)
    error_of(api.put(f"/v1/plugins/{name}/config", content=""), 400)
    error_of(api.post("/v1/plugins", content=b""), 400)


def test_a_good_batch_is_still_accepted(api: httpx.Client) -> None:
    response = api.post("/v1/batches/good", content=OPENAI.read_bytes())
    assert response.status_code == 202 and response.json()["result_count"] == 8
    packed = msgspec.msgpack.encode([msgspec.json.decode(line) for line in OPENAI.read_bytes().splitlines()])
    again = api.post("/v1/batches/good", content=packed, headers={"Content-Type": "application/msgpack"})
    assert again.status_code == 202 and again.json()["duplicate"] is True  # same stored bytes, same digest
