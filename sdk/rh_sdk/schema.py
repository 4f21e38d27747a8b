"""Print the wire protocol's JSON Schema: ``python -m rh_sdk.schema > docs/protocol.schema.json``."""

from __future__ import annotations

import json

from rh_sdk.protocol import json_schema

__all__ = ["schema_text"]


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
