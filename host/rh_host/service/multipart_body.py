"""A batch posted as ``multipart/form-data``: its metadata in the body, not in the URL.

Two fields: ``metadata`` (a JSON object; optional) and ``results`` (the batch output JSONL, as a file
or a plain field). For clients that cannot put metadata in a URL (over a few KiB a URL is cut or the
connection is reset) and for generated OpenAPI clients. The spooled body is read once, through the
``multipart`` push parser that Litestar itself depends on: the results arrive as lines, one at a time,
so a form costs what a plain JSONL body costs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import multipart

from rh_host.service.errors import BadRequest, InvalidBatch

__all__ = ["MAX_METADATA_BYTES", "MultipartBatch", "is_multipart"]

MAX_METADATA_BYTES = 1 << 20
_CHUNK_BYTES = 1 << 20
_FIELDS = ("metadata", "results")


def is_multipart(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "multipart/form-data"


def _boundary(content_type: str) -> str:
    _media, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if not boundary:
        raise BadRequest("body: multipart/form-data without a boundary in Content-Type")
    return boundary


class MultipartBatch:
    """One pass over a spooled form: :meth:`lines` yields the ``results`` field's lines and, by the time
    it is exhausted, :attr:`metadata_text` holds the ``metadata`` field (None when the form had none)."""

    def __init__(self, body: IO[bytes], content_type: str) -> None:
        self._body = body
        self._parser = multipart.PushMultipartParser(_boundary(content_type), max_segment_count=len(_FIELDS))
        self.metadata_text: str | None = None
        self._seen: set[str] = set()

    def lines(self) -> Iterator[bytes]:
        field: str | None = None
        meta = bytearray()
        pending = bytearray()  # the results' current line, until its newline arrives
        try:
            with self._parser as parser:
                while True:
                    chunk = self._body.read(_CHUNK_BYTES)
                    for event in parser.parse(chunk):
                        if isinstance(event, multipart.MultipartSegment):
                            field = self._open(event)
                        elif event is None:  # the end of a field
                            if field == "results" and pending:
                                yield bytes(pending)
                            field = None
                            pending.clear()
                        elif field == "results":
                            pending += event
                            start = 0
                            while (end := pending.find(b"\n", start)) >= 0:
                                yield bytes(pending[start : end + 1])
                                start = end + 1
                            del pending[:start]
                        else:
                            meta += event
                            if len(meta) > MAX_METADATA_BYTES:
                                raise BadRequest(f"metadata: over {MAX_METADATA_BYTES} bytes")
                    if not chunk:
                        break
        except multipart.MultipartError as exc:
            raise InvalidBatch(f"body: not valid multipart/form-data: {exc}") from None
        if "results" not in self._seen:
            raise InvalidBatch("body: the form has no `results` field (the batch output JSONL)")
        if "metadata" in self._seen:
            self.metadata_text = meta.decode("utf-8", "replace")

    def _open(self, segment: multipart.MultipartSegment) -> str:
        name = segment.name
        if name not in _FIELDS:
            raise InvalidBatch(f"body: unexpected form field {name!r}; the fields are `metadata` and `results`")
        if name in self._seen:
            raise InvalidBatch(f"body: the form has the field {name!r} twice")
        if name == "results" and "msgpack" in (segment.content_type or ""):
            raise InvalidBatch("body: the form's `results` must be JSONL; post msgpack as the whole body")
        self._seen.add(name)
        return name
