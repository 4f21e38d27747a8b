import hashlib
import json

from rh_sdk import ResultHandler


class JsonEncodeHandler(ResultHandler):
    """A realistic handler body: JSON-encode every result (what a webhook or exporter does)."""

    def name(self) -> str:
        return "json_encode"

    def handle(self, batch_id, results, metadata):
        payload = json.dumps({"batch_id": batch_id, "results": results}).encode()
        return {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
