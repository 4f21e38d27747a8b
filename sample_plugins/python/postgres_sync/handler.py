"""PostgreSQL sync: upsert one row per result into a table, with a configurable column mapping.

Idempotent: rows are keyed by ``key_columns`` (default batch_id + custom_id) and written with
``INSERT ... ON CONFLICT DO UPDATE`` in one transaction, so a second run of a batch changes nothing.

Config:
  dsn                      (required, secret) libpq URL or key=value string
  table                    target table, optionally schema-qualified (default "batch_results")
  columns                  column -> source path (default below). A path walks the result line
                           ("response.body.choices.0.message.content"); "$batch_id", "$result" (the whole
                           line) and "$metadata.<key>" read the batch
  column_types             column -> text | integer | bigint | double precision | boolean | jsonb | timestamptz
                           (default text; the default mapping makes status_code integer, error/result jsonb)
  key_columns              the unique key of a row (default ["batch_id", "custom_id"])
  create_table             create the table if missing, with that key as primary key (default true)
  connect_timeout_seconds  default 10

Needs psycopg (``requirements.txt``), vendored into ``vendor/`` by ``rh-host plugin pack``.
"""

import json
import os
import re
import sys
from typing import Any, Dict, List, Optional

from core.result_handlers.base import ResultHandler

DEFAULT_COLUMNS = {
    "batch_id": "$batch_id",
    "custom_id": "custom_id",
    "status_code": "response.status_code",
    "model": "response.body.model",
    "content": "response.body.choices.0.message.content",
    "error": "error",
    "result": "$result",
}
DEFAULT_TYPES = {"status_code": "integer", "error": "jsonb", "result": "jsonb"}
TYPES = {"text", "integer", "bigint", "double precision", "boolean", "jsonb", "timestamptz"}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _use_vendor() -> None:
    """Make ./vendor importable when the runner has not already (in-process tests, older runners)."""
    vendor = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
    if os.path.isdir(vendor) and vendor not in sys.path:
        sys.path.insert(1, vendor)


def extract(path: str, result: Dict[str, Any], batch_id: str, metadata: Dict[str, Any]) -> Any:
    if path == "$batch_id":
        return batch_id
    if path == "$result":
        return result
    node: Any = metadata if path.startswith("$metadata.") else result
    parts = path.split(".")[1:] if path.startswith("$metadata.") else path.split(".")
    for part in parts:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


class PostgresSyncHandler(ResultHandler):
    def __init__(self, config: Optional[Dict[str, Any]] = None):
        super().__init__(config)
        self.dsn = self.config.get("dsn")
        if not isinstance(self.dsn, str) or not self.dsn:
            raise ValueError("dsn is required in config")
        table = self.config.get("table", "batch_results")
        if not isinstance(table, str) or not all(_IDENT.match(p) for p in table.split(".")) or table.count(".") > 1:
            raise ValueError("table must be a lowercase identifier, optionally schema.table")
        self.table = table.split(".")
        columns = self.config.get("columns", DEFAULT_COLUMNS)
        if not isinstance(columns, dict) or not columns:
            raise ValueError("columns must be a non-empty table of column = source path")
        for column, source in columns.items():
            if not _IDENT.match(column):
                raise ValueError(f"columns: {column!r} is not a lowercase identifier")
            if not isinstance(source, str) or not source:
                raise ValueError(f"columns.{column} must be a source path string")
        self.columns: Dict[str, str] = dict(columns)
        types = {**(DEFAULT_TYPES if "columns" not in self.config else {}), **self.config.get("column_types", {})}
        for column, kind in types.items():
            if column not in self.columns:
                raise ValueError(f"column_types.{column}: not a mapped column")
            if kind not in TYPES:
                raise ValueError(f"column_types.{column}: {kind!r} is not one of {', '.join(sorted(TYPES))}")
        self.types = {c: types.get(c, "text") for c in self.columns}
        self.keys = self.config.get("key_columns", ["batch_id", "custom_id"])
        if not isinstance(self.keys, list) or not self.keys or not all(k in self.columns for k in self.keys):
            raise ValueError("key_columns must list mapped columns (the row's unique key)")
        self.create_table = bool(self.config.get("create_table", True))
        self.connect_timeout = self.config.get("connect_timeout_seconds", 10)
        if isinstance(self.connect_timeout, bool) or not isinstance(self.connect_timeout, (int, float)):
            raise ValueError("connect_timeout_seconds must be a number")

    def name(self) -> str:
        return "postgres_sync"

    def _value(self, column: str, value: Any, jsonb: Any) -> Any:
        kind = self.types[column]
        if value is None:
            return None
        if kind == "jsonb":
            return jsonb(value)
        if kind == "text" and isinstance(value, (dict, list)):
            return json.dumps(value)
        return value

    def handle(self, batch_id: str, results: List[Dict[str, Any]], metadata: Dict[str, Any]):
        _use_vendor()
        import psycopg
        from psycopg import sql
        from psycopg.types.json import Jsonb

        table = sql.Identifier(*self.table)
        names = list(self.columns)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in names)
        updates = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in names if c not in self.keys]
        upsert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO {}").format(
            table,
            cols,
            sql.SQL(", ").join(sql.Placeholder() for _ in names),
            sql.SQL(", ").join(sql.Identifier(k) for k in self.keys),
            sql.SQL("UPDATE SET ") + sql.SQL(", ").join(updates) if updates else sql.SQL("NOTHING"),
        )
        rows = []
        for result in results:
            row = [self._value(c, extract(self.columns[c], result, batch_id, metadata), Jsonb) for c in names]
            if any(row[names.index(k)] is None for k in self.keys):
                self.logger.warning("result without a key value skipped", extra={"custom_id": result.get("custom_id")})
                continue
            rows.append(row)
        with psycopg.connect(self.dsn, connect_timeout=int(self.connect_timeout)) as conn, conn.cursor() as cur:
            if self.create_table:
                defs = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(self.types[c])) for c in names]
                defs.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, self.keys))))
                cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, sql.SQL(", ").join(defs)))
            cur.executemany(upsert, rows)
        self.logger.info(
            "rows upserted", extra={"batch_id": batch_id, "rows": len(rows), "table": ".".join(self.table)}
        )
        return {"postgres_rows": len(rows), "postgres_table": ".".join(self.table)}
