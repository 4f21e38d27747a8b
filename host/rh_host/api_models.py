"""The batch API's bodies and its error body, as msgspec Structs: the one definition that the service
encodes and documents and that :mod:`rh_host.client` decodes. A leaf: msgspec and rh_sdk.protocol only,
so a client imports no part of the service."""

from __future__ import annotations

from typing import Any

import msgspec

from rh_sdk.protocol import LogRecord, Usage

__all__ = [
    "BatchAccepted",
    "BatchView",
    "ErrorBody",
    "ErrorDetail",
    "RunDetail",
    "RunSummary",
    "UploadUrl",
    "UploadUrlRequest",
]


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class BatchAccepted(msgspec.Struct):
    batch_id: str
    status: str
    result_count: int
    duplicate: bool  # the same batch was posted before; nothing new was queued


class BatchView(msgspec.Struct):
    batch_id: str
    status: str
    result_count: int
    attempts: int
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    success: bool | None = None  # once done


class RunSummary(msgspec.Struct):
    plugin: str
    status: str
    error: str | None
    usage: Usage
    isolation: str
    log_count: int
    recorded_at: float


class RunDetail(RunSummary):
    logs: list[LogRecord]
    egress: list[dict[str, Any]] | None = None  # connections through the host's egress broker


class UploadUrlRequest(msgspec.Struct, forbid_unknown_fields=True):
    metadata: dict[str, Any] = {}  # the batch's metadata, as the POST's ``metadata`` parameter
    expires_in: int = 86_400  # seconds the URL stays usable (at most 7 days)


class UploadUrl(msgspec.Struct):
    batch_id: str
    url: str  # PUT the batch output file here, with no other credentials
    method: str
    expires_at: float
