"""rh_host.client.Client against a real ``rh-host serve``: every form of results, typed answers, and
the API's errors as exceptions with their code and status."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rh_testserver import OPENAI, VLLM, Server, free_port

from rh_host.client import (
    ApiError,
    BatchAccepted,
    BatchOutcome,
    BatchView,
    Client,
    OutcomeTimeout,
    TransportError,
)
from rh_sdk.protocol import ResultLine, ResultResponse

pytestmark = pytest.mark.slow


def line(i: int) -> dict:
    return {
        "id": f"batch_req_{i}",
        "custom_id": f"req-{i}",
        "response": {"status_code": 200, "request_id": f"r{i}", "body": {"choices": []}},
        "error": None,
    }


def lines(n: int) -> Iterator[dict]:
    """A generator: the client must stream it, never call len() on it."""
    return (line(i) for i in range(n))


@pytest.fixture
def rh(server: Server, key: str) -> Iterator[Client]:
    with Client(server.url, key) as client:
        yield client


def test_submit_a_generator_with_metadata_and_wait_for_the_typed_outcome(rh: Client) -> None:
    accepted = rh.submit("gen-1", lines(3000), metadata={"model": "m", "nested": {"a": [1, 2]}})
    assert accepted == BatchAccepted(batch_id="gen-1", status="queued", result_count=3000, duplicate=False)
    outcome = rh.wait("gen-1", timeout=120)
    assert isinstance(outcome, BatchOutcome) and outcome.success
    [run] = outcome.handlers
    assert (run.name, run.status) == ("echo_batch", "ok")
    assert outcome.output["echo.count"] == 3000
    assert outcome.output["echo.custom_ids"] == [f"req-{i}" for i in range(5)]
    assert outcome.output["echo.metadata"] == {"model": "m", "nested": {"a": [1, 2]}}


def test_submit_a_path_bytes_and_result_lines(rh: Client, tmp_path: Path) -> None:
    assert rh.submit("from-path", OPENAI).result_count == len(OPENAI.read_bytes().splitlines())
    assert rh.submit("from-str-path", str(VLLM)).result_count == len(VLLM.read_bytes().splitlines())
    assert rh.submit("from-bytes", VLLM.read_bytes()).result_count == len(VLLM.read_bytes().splitlines())
    structs = [ResultLine(id="x1", custom_id="c1", response=ResultResponse(status_code=200, body={"ok": 1}))]
    assert rh.submit("from-structs", structs).result_count == 1
    assert rh.wait("from-structs", timeout=120).output["echo.custom_ids"] == ["c1"]
    with pytest.raises(FileNotFoundError, match="no such batch output file"):
        rh.submit("missing", tmp_path / "absent.jsonl")


def test_resubmitting_is_a_duplicate_and_other_content_a_conflict(rh: Client) -> None:
    body = VLLM.read_bytes()
    assert not rh.submit("dup", body).duplicate
    assert rh.submit("dup", body).duplicate
    with pytest.raises(ApiError) as refused:
        rh.submit("dup", lines(2))
    assert (refused.value.status_code, refused.value.code) == (409, "conflict")


def test_status_list_and_outcome(rh: Client) -> None:
    rh.submit("s-1", lines(2))
    rh.wait("s-1", timeout=120)
    rh.submit("s-2", lines(1), metadata={"sleep_seconds": 3})
    view = rh.status("s-1")
    assert isinstance(view, BatchView) and (view.status, view.success, view.result_count) == ("done", True, 2)
    listed = rh.list()
    assert [v.batch_id for v in listed] == ["s-2", "s-1"]
    assert [v.batch_id for v in rh.list(status="done")] == ["s-1"]
    assert rh.outcome("s-1").output["echo.count"] == 2
    [summary] = rh.runs("s-1")
    assert (summary.plugin, summary.status, summary.error) == ("echo_batch", "ok", None)
    detail = rh.run("s-1", "echo_batch")
    assert detail.plugin == "echo_batch" and detail.usage.wall_ms > 0
    with pytest.raises(ApiError) as no_run:
        rh.run("s-1", "never_ran")
    assert (no_run.value.status_code, no_run.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as pending:
        rh.outcome("s-2")
    assert (pending.value.status_code, pending.value.code) == (409, "pending")


def test_wait_gives_up_after_its_timeout_and_waits_again(rh: Client) -> None:
    rh.submit("slow", lines(1), metadata={"sleep_seconds": 3})
    with pytest.raises(OutcomeTimeout) as late:
        rh.wait("slow", timeout=0.5)
    assert late.value.status in ("queued", "running") and isinstance(late.value, TimeoutError)
    assert rh.wait("slow", timeout=120).success


@pytest.mark.parametrize(
    ("results", "status", "code", "message"),
    [
        ([{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}], 400, "invalid_batch",
         "input"),
        ([], 400, "invalid_batch", "the batch is empty"),
        (b"{not json\n", 400, "invalid_batch", "body:1"),
    ],
)  # fmt: skip
def test_a_refused_batch_raises_the_apis_code(
    rh: Client, results: object, status: int, code: str, message: str
) -> None:
    with pytest.raises(ApiError) as refused:
        rh.submit("bad", results)  # type: ignore[arg-type]
    assert (refused.value.status_code, refused.value.code) == (status, code)
    assert message in refused.value.message


def test_unknown_batch_bad_key_bad_id_and_no_server(server: Server, rh: Client) -> None:
    with pytest.raises(ApiError) as missing:
        rh.status("never-submitted")
    assert (missing.value.status_code, missing.value.code) == (404, "not_found")
    with Client(server.url, "rhk_not-a-key") as stranger, pytest.raises(ApiError) as denied:
        stranger.list()
    assert (denied.value.status_code, denied.value.code) == (401, "unauthorized")
    with pytest.raises(ApiError) as bad_id:
        rh.submit("../etc", lines(1))
    assert bad_id.value.status_code in (400, 404)
    with Client(f"http://127.0.0.1:{free_port()}", "rhk_x") as nowhere, pytest.raises(TransportError):
        nowhere.list()


def test_large_metadata_travels_in_the_body(rh: Client) -> None:
    big = {"blob": "x" * 200_000}
    assert rh.submit("big-meta", lines(2), metadata=big).result_count == 2
    assert rh.wait("big-meta", timeout=120).output["echo.metadata"] == big
    assert rh.submit("big-meta", lines(2), metadata=big).duplicate  # the same form is the same batch
    with pytest.raises(ApiError) as refused:
        rh.submit("huge-meta", lines(1), metadata={"blob": "x" * (2 << 20)})
    assert (refused.value.status_code, refused.value.code) == (400, "bad_request")
    assert "metadata: over" in refused.value.message


def test_the_client_imports_no_part_of_the_service() -> None:
    code = (
        "import sys, rh_host.client; print(sorted({m.split('.')[0] for m in sys.modules} & {'litestar', 'sqlalchemy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_all_is_pinned() -> None:
    import rh_host.client

    assert rh_host.client.__all__ == [
        "ApiError", "AsyncClient", "BatchAccepted", "BatchOutcome", "BatchStatus", "BatchView", "Client",
        "ClientError", "HandlerRun", "OutcomeTimeout", "RemoteRegistry", "Results", "RunDetail", "RunSummary",
        "TransportError", "UploadUrl",
    ]  # fmt: skip
    for name in rh_host.client.__all__:
        assert hasattr(rh_host.client, name), name


def test_an_upload_url_takes_a_keyless_put_with_the_urls_metadata(rh: Client) -> None:
    granted = rh.upload_url("via-url", metadata={"job": "vllm-7"}, expires_in=600)
    assert granted.method == "PUT" and granted.batch_id == "via-url" and "rhk_" not in granted.url
    response = httpx.put(granted.url, content=VLLM.read_bytes())  # no key: the URL is the credential
    assert response.status_code == 200, response.text
    assert rh.wait("via-url", timeout=120).output["echo.metadata"] == {"job": "vllm-7"}
    with pytest.raises(ApiError) as refused:
        rh.upload_url("via-url", expires_in=0)
    assert (refused.value.status_code, refused.value.code) == (400, "bad_request")
