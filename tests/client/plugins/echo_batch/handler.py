import time

from core.result_handlers.base import ResultHandler


class EchoBatch(ResultHandler):
    """Says what reached it; sleeps when the metadata asks (a batch that stays pending)."""

    def name(self):
        return "echo_batch"

    def handle(self, batch_id, results, metadata):
        time.sleep(float(metadata.get("sleep_seconds", 0)))
        return {
            "echo.batch_id": batch_id,
            "echo.custom_ids": [r.get("custom_id") for r in results[:5]],
            "echo.count": len(results),
            "echo.metadata": metadata,
        }
