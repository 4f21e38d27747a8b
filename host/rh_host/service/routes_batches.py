"""Tenant routes: batch intake, status, outcome, and per-run logs and usage."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import anyio
import msgspec
from anyio import to_thread
from litestar import MediaType, Request, Response, Router, get, post, put
from litestar.di import Provide
from litestar.params import Parameter

from rh_host.api_models import UploadUrl, UploadUrlRequest
from rh_host.outcome import BatchOutcome
from rh_host.service.auth import Caller, caller_of, service_of, tenant_dependency
from rh_host.service.errors import BadRequest, NotFound, Pending, Unauthorized
from rh_host.service.intake import (
    INTAKE_THREADS,
    ParsedBatch,
    check_batch_id,
    parse_metadata,
    parse_spooled,
    receive_body,
)
from rh_host.service.models import BatchAccepted, BatchView, RunDetail, RunSummary
from rh_host.service.openapi_docs import BatchBodyOperation, error_responses
from rh_host.service.views import batch_view, run_detail, run_summary

if TYPE_CHECKING:
    from rh_host.service.service import Service

__all__ = ["batches_router"]

_MAX_WAIT_SECONDS = 30.0


@post(
    "/{batch_id:str}",
    status_code=202,
    operation_class=BatchBodyOperation,
    responses=error_responses(400, 401, 403, 409, 413, 429),
    summary="Submit a batch: JSONL (OpenAI or vLLM batch output) or a msgpack array of output lines",
    description=(
        "Answers 202 only once the batch is durably stored. Posting the same batch id with the same content"
        " again is harmless (duplicate: true); with other content it is a 409. The body streams to disk and"
        " is validated line by line: an empty batch, a bad line or a batch *input* file is a 400 naming the line."
    ),
)
async def submit(
    request: Request,
    caller: Caller,
    batch_id: str,
    metadata: str | None = Parameter(default=None, description="Batch metadata, a JSON object"),
) -> BatchAccepted:
    check_batch_id(batch_id)
    return await _accept(request, caller, batch_id, parse_metadata(metadata))


class Uploader(msgspec.Struct, frozen=True):
    """Who PUTs a batch: a tenant by its key, or the holder of an upload URL (with the URL's metadata)."""

    caller: Caller
    metadata: dict[str, Any] | None  # from the upload token; None: from the metadata parameter


async def uploader_dependency(
    request: Request,
    token: str | None = Parameter(
        default=None, description="The token of an upload URL (POST .../upload-url); instead of a bearer key"
    ),
) -> Uploader:
    if token is None:
        return Uploader(caller=await tenant_dependency(request), metadata=None)
    service = service_of(request)
    grant = service.upload_grants.check(token, request.path_params["batch_id"])
    try:
        row = await to_thread.run_sync(service.store.tenant, grant.tenant_id)
    except NotFound:
        raise Unauthorized("invalid upload token: its tenant no longer exists") from None
    return Uploader(caller=caller_of(row), metadata=grant.metadata)


@put(
    "/{batch_id:str}",
    status_code=200,
    operation_class=BatchBodyOperation,
    responses=error_responses(400, 401, 403, 409, 413, 429),
    dependencies={"uploader": Provide(uploader_dependency)},
    summary="Upload a batch output file (vLLM run_batch -o URL): as POST, answered 200",
    description=(
        "What a batch system that PUTs its output file to a URL calls: vLLM's `run_batch -o URL` sends the"
        " file with PUT and treats any answer but 200 as a failure. Authenticated by a bearer key (metadata"
        " then in the `metadata` parameter) or by the `token` of an upload URL (POST"
        " /v1/batches/{batch_id}/upload-url), which carries the batch's metadata."
    ),
)
async def upload(
    request: Request,
    uploader: Uploader,
    batch_id: str,
    metadata: str | None = Parameter(default=None, description="Batch metadata, a JSON object (bearer key only)"),
) -> BatchAccepted:
    check_batch_id(batch_id)
    if uploader.metadata is not None and metadata is not None:
        raise BadRequest("metadata: an upload URL carries the batch's metadata; the parameter is not allowed")
    meta = uploader.metadata if uploader.metadata is not None else parse_metadata(metadata)
    return await _accept(request, uploader.caller, batch_id, meta)


@post(
    "/{batch_id:str}/upload-url",
    status_code=201,
    responses=error_responses(400, 401, 403),
    summary="A URL that lets whoever holds it PUT this one batch, with no key, until it expires",
    description=(
        "For batch systems that cannot send an Authorization header (vLLM's `run_batch -o URL`). The URL"
        " names this tenant, this batch id, the metadata and the expiry, sealed by the service; it holds no"
        " API key. Give the URL only to the job that writes the batch."
    ),
)
async def upload_url(request: Request, caller: Caller, batch_id: str, data: UploadUrlRequest) -> UploadUrl:
    check_batch_id(batch_id)
    token, expires_at = service_of(request).upload_grants.issue(caller.tenant_id, batch_id, data)
    url = str(request.base_url).rstrip("/") + f"/v1/batches/{quote(batch_id, safe='')}?token={token}"
    return UploadUrl(batch_id=batch_id, url=url, method="PUT", expires_at=expires_at)


async def _accept(request: Request, caller: Caller, batch_id: str, meta: dict[str, Any]) -> BatchAccepted:
    """Receive, validate and store one batch body; the POST and the PUT share it."""
    service = service_of(request)
    async with service.body_slots.hold(caller.tenant_id):
        parsed = await _receive_and_parse(request, service, caller, meta)
        row, created = await to_thread.run_sync(
            service.store.insert_batch,
            caller.tenant_id,
            batch_id,
            parsed.digest,
            parsed.metadata,
            parsed.results,
            parsed.count,
        )
    if created:
        service.metrics.batches_accepted.inc()
        service.notify()
    return BatchAccepted(batch_id=row.batch_id, status=row.status, result_count=row.result_count, duplicate=not created)


async def _receive_and_parse(request: Request, service: Service, caller: Caller, meta: dict[str, Any]) -> ParsedBatch:
    spool = service.settings.data_dir / "spool"
    body = await receive_body(request, caller.quotas.max_batch_mb * 1024 * 1024, spool)
    try:
        content_type = request.headers.get("content-type", "")
        return await to_thread.run_sync(
            parse_spooled, body, content_type, meta, caller.quotas, spool, limiter=_intake_limiter(service)
        )
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(body.close)  # dropping a large file's pages takes milliseconds


def _intake_limiter(service: Service) -> anyio.CapacityLimiter:
    """At most INTAKE_THREADS bodies are parsed at once: more uploads wait their turn, and the
    threads every other route's database calls use stay free."""
    if service.intake_limiter is None:
        service.intake_limiter = anyio.CapacityLimiter(INTAKE_THREADS)
    return service.intake_limiter


@get("/", summary="List batches, newest first")
async def list_batches(
    request: Request,
    caller: Caller,
    status: Literal["queued", "running", "done"] | None = None,
    limit: int = Parameter(default=50, ge=1, le=500),
) -> list[BatchView]:
    store = service_of(request).store
    rows = await to_thread.run_sync(store.list_batches, caller.tenant_id, status, limit)
    successes = await to_thread.run_sync(store.outcome_successes, [r.pk for r in rows if r.status == "done"])
    return [batch_view(r, successes.get(r.pk)) for r in rows]


@get(
    "/{batch_id:str}", responses=error_responses(400, 401, 403, 404), summary="A batch's status (queued, running, done)"
)
async def get_batch(request: Request, caller: Caller, batch_id: str) -> BatchView:
    store = service_of(request).store
    row = await to_thread.run_sync(store.batch, caller.tenant_id, batch_id)
    success = await to_thread.run_sync(store.outcome_success, row.pk) if row.status == "done" else None
    return batch_view(row, success)


@get(
    "/{batch_id:str}/outcome",
    responses=error_responses(400, 401, 403, 404, 409),
    summary="The merged outcome; 409 (code pending) until the batch is done",
    description=(
        "`wait` holds the request up to that many seconds for the outcome. The body is the outcome's JSON"
        " exactly as stored when the batch finished."
    ),
)
async def get_outcome(
    request: Request, caller: Caller, batch_id: str, wait: float = Parameter(default=0.0, ge=0, le=_MAX_WAIT_SECONDS)
) -> Response[BatchOutcome]:
    service = service_of(request)
    store = service.store
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        row = await to_thread.run_sync(store.batch, caller.tenant_id, batch_id)
        outcome = await to_thread.run_sync(store.outcome, row.pk) if row.status == "done" else None
        if outcome is not None:  # the stored bytes as they are: decoding costs many times their size
            return Response(outcome, media_type=MediaType.JSON)
        if time.monotonic() + delay > deadline or service.draining:  # shutting down: answer now, not when killed
            raise Pending(f"batch {batch_id!r} is {row.status}; its outcome is not ready")
        await anyio.sleep(delay)
        delay = min(delay * 1.5, 0.25)


@get("/{batch_id:str}/runs", summary="Every recorded handler run of the batch, with usage")
async def list_runs(request: Request, caller: Caller, batch_id: str) -> list[RunSummary]:
    store = service_of(request).store
    row = await to_thread.run_sync(store.batch, caller.tenant_id, batch_id)
    return [run_summary(r) for r in await to_thread.run_sync(store.runs_of, row.pk)]


@get("/{batch_id:str}/runs/{plugin:str}", summary="One handler's run: status, usage and logs")
async def get_run(request: Request, caller: Caller, batch_id: str, plugin: str) -> RunDetail:
    store = service_of(request).store
    row = await to_thread.run_sync(store.batch, caller.tenant_id, batch_id)
    run = await to_thread.run_sync(store.last_run, row.pk, plugin)
    if run is None:
        raise NotFound(f"batch {batch_id!r} has no run of {plugin!r}")
    return run_detail(run)


batches_router = Router(
    path="/v1/batches",
    route_handlers=[submit, upload, upload_url, list_batches, get_batch, get_outcome, list_runs, get_run],
    dependencies={"caller": Provide(tenant_dependency)},
    tags=["batches"],
)
