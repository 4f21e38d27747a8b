"""Serving the app with uvicorn: one process, the worker pool in threads beside the event loop.

uvicorn speaks HTTP; ``http_guard`` adds the read deadlines and the connection cap it lacks, and
``log_budget`` bounds the log under a flood.
"""

from __future__ import annotations

import logging
import resource
from types import FrameType

import uvicorn

from rh_host.service.app import create_app
from rh_host.service.http_guard import ConnectionLimits, guarded_protocol
from rh_host.service.log_budget import LogBudget
from rh_host.service.service import Service
from rh_host.service.settings import ServiceSettings

__all__ = ["raise_fd_limit", "serve"]

_log = logging.getLogger("rh.service")


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, which on SIGTERM or SIGINT also stops the service claiming batches at once:
    uvicorn itself only tells the app (lifespan shutdown) once every open connection has closed, and
    until then the worker pool would go on claiming."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self._service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._service.drain()
        super().handle_exit(sig, frame)


def raise_fd_limit() -> int:
    """Raise the open-files soft limit to the hard limit (the usual soft 1024 runs out under load long before
    memory does); returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def serve(
    settings: ServiceSettings,
    host: str,
    port: int,
    log_level: str = "info",
    limits: ConnectionLimits | None = None,
) -> None:
    limits = limits or ConnectionLimits()
    fd_limit = raise_fd_limit()
    service = Service(settings)
    app = create_app(service)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        # asyncio accepts up to `backlog` connections per wake-up before the guard sees any: a smaller
        # queue keeps a connect burst's overshoot past the cap small (uvicorn's default is 2048)
        backlog=128,
        log_level=log_level,
        access_log=log_level == "debug",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    LogBudget().install(logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.access"))
    _log.info(
        "serving (role %s) on http://%s:%d, data in %s; at most %d connections (open files: %d);"
        " head within %g s, body %g s",
        settings.role,
        host,
        port,
        settings.data_dir,
        limits.max_connections,
        fd_limit,
        limits.header_read_seconds,
        limits.body_read_seconds,
    )
    _DrainingServer(config, service).run()
