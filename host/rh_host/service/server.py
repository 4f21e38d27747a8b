"""Serving the app with uvicorn: one process, the worker pool in threads beside the event loop."""

from __future__ import annotations

import logging

import uvicorn

from rh_host.service.app import create_app
from rh_host.service.service import Service
from rh_host.service.settings import ServiceSettings

__all__ = ["serve"]

_log = logging.getLogger("rh.service")


def serve(settings: ServiceSettings, host: str, port: int, log_level: str = "info") -> None:
    service = Service(settings)
    app = create_app(service)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level == "debug",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    _log.info("serving on http://%s:%d, data in %s", host, port, settings.data_dir)
    uvicorn.Server(config).run()
