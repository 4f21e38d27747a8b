"""``rh-host batch``: submit a batch output file to the service and read its status and outcome."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import msgspec

from rh_host.cli._client import Client, key_option, url_option
from rh_host.cli._common import EXIT_FAILED, EXIT_OK, fail
from rh_host.cli.render import render_outcome
from rh_host.client._body import sync_chunks, sync_form
from rh_host.outcome import BatchOutcome

__all__ = ["batch"]


@click.group()
def batch() -> None:
    """Submit batches and fetch outcomes (tenant)."""


@batch.command()
@click.argument("results", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--id", "batch_id", help="Batch id (default: the file name without extension).")
@click.option("--metadata", help="Batch metadata as a JSON object.")
@click.option("--wait", is_flag=True, help="Wait for the outcome and print it.")
@url_option
@key_option
def submit(results: str, batch_id: str | None, metadata: str | None, wait: bool, url: str, key: str | None) -> None:
    """Submit RESULTS, a batch output JSONL file (- for stdin)."""
    meta: dict[str, Any] | None = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as exc:
            fail(f"--metadata: invalid JSON: {exc}")
        if not isinstance(meta, dict):
            fail("--metadata: must be a JSON object")
    body: bytes | Path
    if results == "-":
        body, default_id = sys.stdin.buffer.read(), None
    else:
        try:
            Path(results).open("rb").close()  # a clear error now, not mid-upload
        except OSError as exc:
            fail(f"{results}: cannot read: {exc.strerror}")
        body, default_id = Path(results), Path(results).stem  # streamed, never read whole
    batch_id = batch_id or default_id
    if not batch_id:
        fail("--id is required when reading stdin")
    # metadata travels in a multipart body: in the URL, a few KiB of it would cut the request
    content_type, content = ("application/jsonl", sync_chunks(body)) if meta is None else sync_form(body, meta)
    with Client(url, key) as client:
        accepted = client.json(
            "POST", f"/v1/batches/{batch_id}", content=content, headers={"Content-Type": content_type}
        )
        note = " (already submitted)" if accepted["duplicate"] else ""
        click.echo(f"batch {accepted['batch_id']}: {accepted['status']}, {accepted['result_count']} results{note}")
        if wait:
            _print_outcome(client, batch_id, as_json=False, wait_seconds=600)


@batch.command()
@click.argument("batch_id")
@url_option
@key_option
def status(batch_id: str, url: str, key: str | None) -> None:
    """Print a batch's status."""
    with Client(url, key) as client:
        view = client.json("GET", f"/v1/batches/{batch_id}")
    success = "" if view["success"] is None else f", success={str(view['success']).lower()}"
    click.echo(f"batch {view['batch_id']}: {view['status']}{success} (attempts {view['attempts']})")


@batch.command()
@click.argument("batch_id")
@click.option("--wait", "wait_seconds", default=0.0, type=click.FloatRange(0), help="Wait up to this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON document.")
@url_option
@key_option
def outcome(batch_id: str, wait_seconds: float, as_json: bool, url: str, key: str | None) -> None:
    """Print a batch's merged outcome (exit 1 when a handler did not succeed)."""
    with Client(url, key) as client:
        _print_outcome(client, batch_id, as_json, wait_seconds)


def _print_outcome(client: Client, batch_id: str, as_json: bool, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        remaining = max(0.0, min(30.0, deadline - time.monotonic()))
        response = client.call("GET", f"/v1/batches/{batch_id}/outcome", params={"wait": remaining}, ok=(409,))
        if response.status_code != 409:
            break
        if response.json()["error"]["code"] != "pending":
            fail(response.json()["error"]["message"])
        if time.monotonic() >= deadline:
            fail(response.json()["error"]["message"], code=EXIT_FAILED)
    result = msgspec.json.decode(response.content, type=BatchOutcome)
    click.echo(response.text if as_json else render_outcome(result))
    sys.exit(EXIT_OK if result.success else EXIT_FAILED)
