"""``rh-host serve``: the multi-tenant service (HTTP API, storage, tenants, plugins, batches, workers).

Layers, top down: ``app`` and ``routes_*`` (HTTP) -> ``auth``, ``views``, ``intake`` -> ``service``
(the parts) -> ``worker`` (running batches) and ``store`` (every query) -> ``schema``, ``db``.
"""

from rh_host.service.app import OPENAPI_PATH, create_app
from rh_host.service.server import serve
from rh_host.service.service import Service
from rh_host.service.settings import Quotas, ServiceSettings, UploadCaps

__all__ = ["OPENAPI_PATH", "Quotas", "Service", "ServiceSettings", "UploadCaps", "create_app", "serve"]
