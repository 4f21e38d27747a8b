"""PUT /v1/batches/{id}: the request vLLM's ``run_batch -o URL`` sends, sent the way it sends it (aiohttp,
``session.put(url, data=<open file>)`` and, for in-memory output, ``data=<bytes>``; any answer but 200 is a
failure to vLLM), authenticated by an upload URL's token; and the POST still as it was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from rh_testserver import SAMPLE_PLUGINS, VLLM, Server, outcome, upload

pytestmark = pytest.mark.slow


async def vllm_upload_data(output_url: str, data_or_file: str | bytes, from_file: bool) -> tuple[int, str]:
    """What vLLM's ``upload_data`` does for one attempt (vllm/entrypoints/openai/run_batch.py)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1000)) as session:
        if from_file:
            with open(data_or_file, "rb") as file:
                async with session.put(output_url, data=file) as response:
                    return response.status, await response.text()
        async with session.put(output_url, data=data_or_file) as response:
            return response.status, await response.text()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.tenant(f"put-{time.monotonic_ns()}") as client:
        assert upload(client, SAMPLE_PLUGINS[0], activate="true").status_code == 201
        yield client


def upload_url(api: httpx.Client, batch_id: str, **body: object) -> str:
    response = api.post(f"/v1/batches/{batch_id}/upload-url", json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["method"] == "PUT" and answer["batch_id"] == batch_id
    assert "rhk_" not in answer["url"] and answer["expires_at"] > time.time()
    return answer["url"]


def test_vllms_file_upload_to_an_upload_url_is_accepted_with_200(api: httpx.Client, tmp_path: Path) -> None:
    url = upload_url(api, "vllm-file", metadata={"model": "meta-llama/Llama-3-8B", "job": 7})
    output = tmp_path / "tmp_batch_output_x.jsonl"  # vLLM's temporary file: aiohttp names it in the request
    output.write_bytes(VLLM.read_bytes())
    status, body = asyncio.run(vllm_upload_data(url, str(output), from_file=True))
    assert status == 200, body
    assert '"result_count":' in body and '"duplicate":false' in body
    done = outcome(api, "vllm-file")
    assert done["success"] and done["result_count"] == len(VLLM.read_bytes().splitlines())
    stored = api.get("/v1/batches/vllm-file").json()
    assert stored["status"] == "done"
    # vLLM retries a failed upload: the same file again is a duplicate, answered 200 too
    status, body = asyncio.run(vllm_upload_data(url, str(output), from_file=True))
    assert status == 200 and '"duplicate":true' in body


def test_vllms_in_memory_upload_and_the_tokens_metadata(api: httpx.Client) -> None:
    url = upload_url(api, "vllm-mem", metadata={"source": "vllm"}, expires_in=60)
    data = VLLM.read_text().strip().encode("utf-8")  # vLLM strips the buffer: no final newline
    status, body = asyncio.run(vllm_upload_data(url, data, from_file=False))
    assert status == 200, body
    outcome(api, "vllm-mem")
    listed = api.get("/v1/batches/vllm-mem/runs").json()
    assert [r["plugin"] for r in listed] == ["stats_summary"]


def test_an_upload_token_opens_its_own_batch_only(api: httpx.Client, server: Server) -> None:
    url = upload_url(api, "only-this")
    other = url.replace("/v1/batches/only-this?", "/v1/batches/another?")
    response = httpx.put(other, content=VLLM.read_bytes())
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert "only-this" in response.json()["error"]["message"]
    tampered = url[:-6] + ("AAAAAA" if not url.endswith("AAAAAA") else "BBBBBB")
    response = httpx.put(tampered, content=VLLM.read_bytes())
    assert response.status_code == 401 and response.json()["error"]["message"] == "invalid upload token"
    response = httpx.put(f"{server.url}/v1/batches/only-this", content=VLLM.read_bytes())
    assert response.status_code == 401  # no token, no key
    # the token is not a key: it opens no other route
    token = url.split("token=")[1]
    assert httpx.get(f"{server.url}/v1/batches/only-this", params={"token": token}).status_code == 401
    assert api.get("/v1/batches/another").status_code == 404  # nothing was stored


def test_an_expired_upload_url_is_refused(api: httpx.Client) -> None:
    url = upload_url(api, "expiring", expires_in=1)
    time.sleep(1.2)
    response = httpx.put(url, content=VLLM.read_bytes())
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_upload_url_requests_are_checked(api: httpx.Client) -> None:
    for body, needle in [
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": 8 * 24 * 3600}, "expires_in"),
        ({"metadata": {"blob": "x" * 20_000}}, "too large for an upload URL"),
        ({"metadata": [1]}, "metadata"),
        ({"unknown": 1}, "unknown"),
    ]:
        response = api.post("/v1/batches/b/upload-url", json=body)
        assert response.status_code == 400, (body, response.text)
        assert needle in response.json()["error"]["message"], response.text


def test_put_with_a_bearer_key_takes_metadata_like_post(api: httpx.Client) -> None:
    response = api.put("/v1/batches/put-key", content=VLLM.read_bytes(), params={"metadata": '{"a": 1}'})
    assert response.status_code == 200, response.text
    assert response.json()["duplicate"] is False
    post = api.post("/v1/batches/put-key", content=VLLM.read_bytes(), params={"metadata": '{"a": 1}'})
    assert post.status_code == 202 and post.json()["duplicate"] is True  # the POST, unchanged
    url = upload_url(api, "tok-meta", metadata={"a": 1})
    both = httpx.put(url + "&metadata=%7B%7D", content=VLLM.read_bytes())
    assert both.status_code == 400 and "upload URL carries" in both.json()["error"]["message"]
    empty = httpx.put(url, content=b"")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_batch"
