"""What the OpenAPI document cannot infer from route signatures: raw request bodies and our error body.

Batch intake streams its body to disk and plugin upload reads an archive, so neither route has a
``data`` parameter for Litestar to describe: without an operation class (``operation_class=``) the
document shows no body and a client generated from it cannot send a batch. And Litestar documents a
400 with its own validation shape; :func:`error_responses` documents the ``{"error": {code, message}}``
that every 4xx really is.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from rh_host.api_models import ErrorBody

__all__ = ["BatchBodyOperation", "PluginArchiveOperation", "error_responses"]

_BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
_FORM = Schema(
    type=OpenAPIType.OBJECT,
    required=["results"],
    properties={
        "results": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, description="Batch output JSONL"),
        "metadata": Schema(type=OpenAPIType.STRING, description="Batch metadata, a JSON object"),
    },
)


_ERRORS = {
    400: "bad_request, invalid_batch or upload_rejected: the message names the line, field or file",
    401: "unauthorized: no key, an unknown one, or an invalid upload token",
    403: "forbidden: the wrong kind of key, or an upload token for another batch",
    404: "not_found: no such id (also another tenant's)",
    409: "conflict (the id holds other content) or pending (no outcome yet)",
    413: "payload_too_large or quota_exceeded: this one body or item is over the limit",
    429: "quota_exceeded: a tenant total; the message names the quota",
}


def error_responses(*status_codes: int) -> dict[int, ResponseSpec]:
    """The error answers of a route, each with the body every error has."""
    return {
        code: ResponseSpec(data_container=ErrorBody, description=_ERRORS[code], generate_examples=False)
        for code in status_codes
    }


def _body(description: str, media_types: tuple[str, ...]) -> RequestBody:
    return RequestBody(
        required=True,
        description=description,
        content={media_type: OpenAPIMediaType(schema=_BINARY) for media_type in media_types},
    )


@dataclass
class BatchBodyOperation(Operation):
    """The body of POST and PUT /v1/batches/{batch_id}."""

    def __post_init__(self) -> None:
        self.request_body = _body(
            "Batch output JSONL as OpenAI Batch or vLLM run_batch write it (one result line per line); with"
            " Content-Type application/msgpack, a msgpack array of result lines; or a multipart/form-data form"
            " with the JSONL in `results` and the metadata (a JSON object) in `metadata`, instead of the"
            " `metadata` parameter. Any other content type is read as JSONL.",
            ("application/jsonl", "application/x-ndjson", "application/octet-stream", "application/msgpack"),
        )
        self.request_body.content["multipart/form-data"] = OpenAPIMediaType(schema=_FORM)


@dataclass
class PluginArchiveOperation(Operation):
    """The body of POST /v1/plugins."""

    def __post_init__(self) -> None:
        self.request_body = _body(
            "A zip or tar.gz of a plugin directory (plugin.toml at its root or in its one top-level directory).",
            ("application/gzip", "application/zip", "application/octet-stream"),
        )
