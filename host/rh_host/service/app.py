"""The ASGI app: Litestar (msgspec-native: request and response bodies are msgspec Structs) with
every error, ours or the framework's, answered as ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from rh_host.service.errors import ServiceError
from rh_host.service.models import ErrorBody, ErrorDetail
from rh_host.service.routes_batches import batches_router
from rh_host.service.routes_ops import cluster, healthz, metrics
from rh_host.service.routes_plugins import plugins_router
from rh_host.service.routes_tenants import me_router, tenants_router
from rh_host.service.service import Service

__all__ = ["OPENAPI_PATH", "create_app"]

OPENAPI_PATH = "/schema/openapi.json"
_log = logging.getLogger("rh.service.http")
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "quota_exceeded",
}


class BoundedRequest(Request[Any, Any, Any]):
    """A request whose JSON or msgpack body, nested past the decoder's depth, is a 400 and not a RecursionError."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise ClientException("request body: nested deeper than the JSON decoder allows") from None

    async def msgpack(self) -> Any:
        try:
            return await super().msgpack()
        except RecursionError:
            raise ClientException("request body: nested deeper than the msgpack decoder allows") from None


def _error(status: int, code: str, message: str) -> Response[ErrorBody]:
    return Response(ErrorBody(error=ErrorDetail(code=code, message=message)), status_code=status)


def _service_error(_request: Request, exc: ServiceError) -> Response[ErrorBody]:
    if exc.status_code >= 500:
        _log.error("%s: %s", exc.code, exc)
    return _error(exc.status_code, exc.code, str(exc))


def _http_error(_request: Request, exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    message = str(exc.detail) if exc.detail else HTTPStatus(status).phrase
    if isinstance(exc, ValidationException) and exc.extra:
        first = exc.extra[0] if isinstance(exc.extra, list) else exc.extra
        message = f"{message}: {first}"
    return _error(status, _CODES.get(status, "internal" if status >= 500 else "bad_request"), message)


def _unexpected(request: Request, exc: Exception) -> Response[ErrorBody]:
    _log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal", "internal error; the operator's log has the details")


def create_app(service: Service) -> Litestar:
    """The app for a built (not yet started) service; the app's lifespan starts and closes it."""
    openapi = OpenAPIConfig(
        title="rh-host",
        version="1",
        description="Multi-tenant host for LLM batch result handlers. Every route but /healthz and the schema "
        "takes `Authorization: Bearer <key>`: a tenant key, or the operator token for /v1/tenants and /metrics.",
        path="/schema",
        render_plugins=[JsonRenderPlugin(), SwaggerRenderPlugin(path="/docs")],
        security=[{"bearer": []}],
        components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
    )
    return Litestar(
        route_handlers=[healthz, metrics, cluster, tenants_router, me_router, plugins_router, batches_router],
        exception_handlers={
            ServiceError: _service_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        openapi_config=openapi,
        request_class=BoundedRequest,
        on_startup=[lambda: service.start()],
        on_shutdown=[lambda: service.close()],
        state={"service": service},  # type: ignore[arg-type]
        request_max_body_size=service.settings.max_body_mb * 1024 * 1024,
        logging_config=None,
    )
