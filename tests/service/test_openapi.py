"""The OpenAPI document declares the bodies the raw-body routes read, a client driven by the document
alone posts a batch, and the docs UI is served."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from rh_testserver import OPENAI, SAMPLE_PLUGINS, Server, outcome, pack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spec(server: Server) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/schema/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()


def body_of(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    body = spec["paths"][path][method].get("requestBody")
    assert body is not None, f"{method.upper()} {path} declares no request body"
    return body


@pytest.mark.parametrize("method", ["post", "put"])
def test_batch_submit_declares_its_body(spec: dict[str, Any], method: str) -> None:
    body = body_of(spec, "/v1/batches/{batch_id}", method)
    assert body["required"] is True
    form = body["content"].pop("multipart/form-data")["schema"]
    assert form["required"] == ["results"] and form["properties"]["results"]["format"] == "binary"
    assert set(form["properties"]) == {"results", "metadata"}
    assert {"application/jsonl", "application/msgpack"} <= set(body["content"])
    for media in body["content"].values():
        assert media["schema"] == {"type": "string", "format": "binary"}


def test_plugin_upload_and_upload_url_declare_their_bodies(spec: dict[str, Any]) -> None:
    archive = body_of(spec, "/v1/plugins", "post")
    assert {"application/gzip", "application/zip"} <= set(archive["content"])
    grant = body_of(spec, "/v1/batches/{batch_id}/upload-url", "post")
    assert "application/json" in grant["content"]
    put_params = {p["name"] for p in spec["paths"]["/v1/batches/{batch_id}"]["put"]["parameters"]}
    assert {"batch_id", "token", "metadata"} <= put_params


def test_a_client_driven_by_the_document_posts_a_batch(server: Server, spec: dict[str, Any]) -> None:
    """What a generated client does: path template, the documented media type and success status."""
    with server.tenant("from-the-spec") as api:
        upload_op = spec["paths"]["/v1/plugins"]["post"]
        media = next(iter(body_of(spec, "/v1/plugins", "post")["content"]))
        response = api.post("/v1/plugins", content=pack(SAMPLE_PLUGINS[0]), headers={"Content-Type": media})
        assert str(response.status_code) in upload_op["responses"], response.text

        submit_op = spec["paths"]["/v1/batches/{batch_id}"]["post"]
        media = next(iter(body_of(spec, "/v1/batches/{batch_id}", "post")["content"]))
        path = "/v1/batches/{batch_id}".format(batch_id="spec-1")
        response = api.post(path, content=OPENAI.read_bytes(), headers={"Content-Type": media})
        assert response.status_code == 202 and "202" in submit_op["responses"], response.text
        assert outcome(api, "spec-1")["success"] is True


def test_the_docs_ui_is_served(server: Server) -> None:
    response = httpx.get(f"{server.url}/schema/docs", timeout=30)
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "SwaggerUIBundle(" in response.text  # the page embeds the document itself
    assert '"/v1/batches/{batch_id}/upload-url"' in response.text


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/v1/batches/{batch_id}", "post", {"400", "401", "409", "413", "429"}),
        ("/v1/batches/{batch_id}", "put", {"400", "401", "403", "409", "413"}),
        ("/v1/batches/{batch_id}/outcome", "get", {"404", "409"}),
        ("/v1/plugins", "post", {"400", "413", "429"}),
    ],
)
def test_error_answers_are_documented_with_the_error_body(
    spec: dict[str, Any], path: str, method: str, codes: set[str]
) -> None:
    responses = spec["paths"][path][method]["responses"]
    assert codes <= set(responses)
    for code in codes:
        schema = responses[code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (code, schema)
    error = spec["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message"}
