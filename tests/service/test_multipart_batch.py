"""A batch posted as multipart/form-data: metadata in the body (any size up to 1 MiB, where a URL is
cut at a few KiB), the results as a JSONL file field; and the form's mistakes as 400s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from rh_testserver import OPENAI, SAMPLE_PLUGINS, Server, outcome, upload

pytestmark = pytest.mark.slow


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.tenant(f"form-{time.monotonic_ns()}") as client:
        assert upload(client, SAMPLE_PLUGINS[0], activate="true").status_code == 201
        yield client


def form(metadata: object | None, results: bytes = OPENAI.read_bytes()) -> dict[str, object]:
    fields = {"files": {"results": ("results.jsonl", results, "application/jsonl")}}
    if metadata is not None:
        fields["data"] = {"metadata": metadata if isinstance(metadata, str) else json.dumps(metadata)}
    return fields


def test_metadata_of_200_kib_travels_in_the_body(api: httpx.Client) -> None:
    big = {"notes": "n" * 200_000, "model": "gpt-4o-mini"}
    response = api.post("/v1/batches/form-1", **form(big))
    assert response.status_code == 202, response.text
    assert response.json()["result_count"] == len(OPENAI.read_bytes().splitlines())
    assert outcome(api, "form-1")["success"]
    # the same form again is the same batch; the same results with the metadata in the URL too
    assert api.post("/v1/batches/form-1", **form(big)).json()["duplicate"] is True
    other = api.post("/v1/batches/form-1", **form({"model": "other"}))
    assert other.status_code == 409


def test_a_form_with_results_only_equals_the_plain_body(api: httpx.Client) -> None:
    assert api.post("/v1/batches/form-2", **form(None)).status_code == 202
    plain = api.post("/v1/batches/form-2", content=OPENAI.read_bytes())
    assert plain.status_code == 202 and plain.json()["duplicate"] is True


def test_a_last_line_without_newline_and_lines_across_chunks(api: httpx.Client) -> None:
    line = OPENAI.read_bytes().splitlines()[0]
    results = b"\n".join([line] * 3000)  # ~1.5 MiB: crosses the parser's chunks; no final newline
    response = api.post("/v1/batches/form-3", **form({"k": 1}, results))
    assert response.status_code == 202 and response.json()["result_count"] == 3000, response.text


@pytest.mark.parametrize(
    ("kwargs", "params", "needle"),
    [
        (form({"a": 1}), {"metadata": '{"b": 2}'}, "both in the URL and in the body"),
        (form([1, 2]), {}, "metadata: must be a JSON object"),
        (form("{not json"), {}, "metadata: invalid JSON"),
        ({"files": {"metadata": (None, b"{}")}}, {}, "no `results` field"),
        ({"files": {"other": ("x", b"y")}}, {}, "unexpected form field 'other'"),
        (form({"a": 1}, b""), {}, "the batch is empty"),
        (form(None, b'{"custom_id": "a", "method": "POST", "url": "/v1/x", "body": {}}\n'), {}, "body:1:"),
        (form({"m": "x" * (1 << 20)}), {}, "metadata: over"),
    ],
)
def test_form_mistakes_are_400s(api: httpx.Client, kwargs: dict, params: dict, needle: str) -> None:
    response = api.post("/v1/batches/bad-form", params=params, **kwargs)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]["message"]
    assert api.get("/v1/batches/bad-form").status_code == 404


def test_a_form_without_a_boundary_or_cut_short_is_a_400(api: httpx.Client) -> None:
    no_boundary = api.post("/v1/batches/b", content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["error"]["message"]
    cut = b'--XX\r\nContent-Disposition: form-data; name="results"\r\n\r\n' + OPENAI.read_bytes()
    response = api.post("/v1/batches/b", content=cut, headers={"Content-Type": "multipart/form-data; boundary=XX"})
    assert response.status_code == 400 and "not valid multipart" in response.json()["error"]["message"]
