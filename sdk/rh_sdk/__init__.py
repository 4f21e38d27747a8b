"""rh_sdk: what plugin authors import.

Write a handler exactly as the plugin guide shows::

    from rh_sdk import ResultHandler

    class MyHandler(ResultHandler):
        def handle(self, batch_id, results, metadata):
            return {"count": len(results)}   # True, False, or a dict of output

Test it in-process with :func:`get_registry` or :mod:`rh_sdk.testing`; run it sandboxed with
``rh-host run``. The wire protocol lives in :mod:`rh_sdk.protocol`.
"""

from rh_sdk._handler import DEFAULT_PRIORITY, ResultHandler
from rh_sdk._registry import HandlerOutcome, HandlerRegistry, get_registry
from rh_sdk.protocol import PROTOCOL_VERSION, RunStatus

__all__ = [
    "DEFAULT_PRIORITY",
    "PROTOCOL_VERSION",
    "HandlerOutcome",
    "HandlerRegistry",
    "ResultHandler",
    "RunStatus",
    "get_registry",
]
__version__ = "0.1.0"
