"""S3 upload: the batch's results as one object on S3 or any S3-compatible store (MinIO, Ceph, R2...).

Idempotent: the key is derived from the batch id, so a second run overwrites the same object.

Config:
  bucket              (required) target bucket
  endpoint_url        S3-compatible endpoint, e.g. https://minio.internal:9000 (default: AWS)
  region              default "us-east-1"
  access_key_id       (secret) with secret_access_key; both or neither
  secret_access_key   (secret)
  key_template        default "batches/{batch_id}/results.jsonl"; {batch_id} is required
  format              "jsonl" (one line per result, default) or "json" (one document with the summary)
  path_style          path-style addressing (default: true when endpoint_url is set)
  timeout_seconds     connect and read timeout (default 15)
  max_attempts        botocore's attempts per request (default 3)

Needs boto3 (``requirements.txt``), vendored into ``vendor/`` by ``rh-host plugin pack``.
"""

import hashlib
import json
import os
import sys
from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler


def _use_vendor() -> None:
    """Make ./vendor importable when the runner has not already (in-process tests, older runners)."""
    vendor = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
    if os.path.isdir(vendor) and vendor not in sys.path:
        sys.path.insert(1, vendor)


class S3UploadHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        self.bucket = self.config.get("bucket")
        if not isinstance(self.bucket, str) or not self.bucket:
            raise ValueError("bucket is required in config")
        self.endpoint_url = self.config.get("endpoint_url")
        if self.endpoint_url is not None and not str(self.endpoint_url).startswith(("https://", "http://")):
            raise ValueError("endpoint_url must be an http(s) URL")
        self.region = str(self.config.get("region", "us-east-1"))
        self.access_key_id = self.config.get("access_key_id")
        self.secret_access_key = self.config.get("secret_access_key")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("access_key_id and secret_access_key must be given together")
        self.key_template = self.config.get("key_template", "batches/{batch_id}/results.jsonl")
        if not isinstance(self.key_template, str) or "{batch_id}" not in self.key_template:
            raise ValueError("key_template must be a string containing {batch_id}")
        self.format = self.config.get("format", "jsonl")
        if self.format not in ("jsonl", "json"):
            raise ValueError("format must be 'jsonl' or 'json'")
        self.path_style = bool(self.config.get("path_style", self.endpoint_url is not None))
        self.timeout = self.config.get("timeout_seconds", 15)
        self.max_attempts = self.config.get("max_attempts", 3)
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise ValueError("timeout_seconds must be a positive number")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError("max_attempts must be a positive integer")

    def name(self) -> str:
        return "s3_upload"

    def body(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]) -> bytes:
        if self.format == "jsonl":
            return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in results).encode()
        return json.dumps({"batch_id": batch_id, "metadata": metadata, "results": results}).encode()

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        _use_vendor()
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                retries={"max_attempts": self.max_attempts, "mode": "standard"},
                s3={"addressing_style": "path" if self.path_style else "auto"},
            ),
        )
        key = self.key_template.format(batch_id=batch_id)
        data = self.body(batch_id, results, metadata)
        digest = hashlib.sha256(data).hexdigest()
        content_type = "application/x-ndjson" if self.format == "jsonl" else "application/json"
        response = client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            Metadata={"batch-id": batch_id, "sha256": digest, "results": str(len(results))},
        )
        etag = str(response.get("ETag", "")).strip('"')
        self.logger.info(
            f"uploaded to s3://{self.bucket}/{key}", extra={"batch_id": batch_id, "bytes": len(data), "etag": etag}
        )
        return {"s3_key": key, "s3_bytes": len(data), "s3_sha256": digest}
