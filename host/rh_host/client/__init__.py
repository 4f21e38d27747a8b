"""rh_host.client: what a batch system uses to hand batches to an rh-host service.

::

    from rh_host.client import Client

    with Client("http://127.0.0.1:8700", key="rhk_...") as rh:
        rh.submit("batch-42", "results.jsonl", metadata={"model": "gpt-4o-mini"})
        outcome = rh.wait("batch-42", timeout=600)      # a BatchOutcome
        print(outcome.success, [(h.name, h.status) for h in outcome.handlers])

:class:`AsyncClient` has the same calls for asyncio. :class:`RemoteRegistry` is the plugin guide's
``get_registry()`` for a remote service: ``process_results(batch_id, results, metadata) -> bool``.
The bodies are the service's own msgspec Structs. Every refusal raises :class:`ApiError` (``code``,
``status_code``); see ``_errors`` for the whole hierarchy.
"""

from rh_host.api_models import BatchAccepted, BatchView, RunDetail, RunSummary, UploadUrl
from rh_host.client._async import AsyncClient
from rh_host.client._body import Results
from rh_host.client._errors import ApiError, ClientError, OutcomeTimeout, TransportError
from rh_host.client._remote_registry import RemoteRegistry
from rh_host.client._sync import BatchStatus, Client
from rh_host.outcome import BatchOutcome, HandlerRun

__all__ = [
    "ApiError",
    "AsyncClient",
    "BatchAccepted",
    "BatchOutcome",
    "BatchStatus",
    "BatchView",
    "Client",
    "ClientError",
    "HandlerRun",
    "OutcomeTimeout",
    "RemoteRegistry",
    "Results",
    "RunDetail",
    "RunSummary",
    "TransportError",
    "UploadUrl",
]
