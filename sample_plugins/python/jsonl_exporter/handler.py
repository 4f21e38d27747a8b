"""JSONL exporter: one line per successful answer (custom_id, model, content) in the scratch directory.

The scratch directory is the run's working directory and lives as long as the run: a real exporter
uploads the file (see the S3 and webhook plugins); this one reports its size and a digest.
Config: ``filename`` (default ``export.jsonl``, a plain file name).
"""

import hashlib
import json
import os
from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler


def answer_of(result: Dict[str, Any]) -> Optional[str]:
    body = (result.get("response") or {}).get("body") or {}
    choices = body.get("choices") or []
    if not choices:
        return None
    message = choices[0].get("message") or {}
    return message.get("content")


class JsonlExporterHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        self.filename = str(self.config.get("filename", "export.jsonl"))
        if os.path.basename(self.filename) != self.filename or self.filename in ("", ".", ".."):
            raise ValueError("filename must be a plain file name")

    def name(self) -> str:
        return "jsonl_exporter"

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        digest = hashlib.sha256()
        exported = 0
        with open(self.filename, "w", encoding="utf-8") as out:
            for result in results:
                content = answer_of(result)
                if content is None:
                    continue
                body = result["response"]["body"]
                record = {"custom_id": result.get("custom_id"), "model": body.get("model"), "content": content}
                line = json.dumps(record)
                out.write(line + "\n")
                digest.update(line.encode() + b"\n")
                exported += 1
        size = os.path.getsize(self.filename)
        self.logger.info(f"exported {exported} answers", extra={"batch_id": batch_id, "bytes": size})
        return {"exported": exported, "export_bytes": size, "export_sha256": digest.hexdigest()}
