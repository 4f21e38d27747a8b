"""``rh-host status``: the nodes sharing the service's database and each tenant's queue (operator)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from rh_host.cli._client import Client, operator_options, operator_token

__all__ = ["status"]


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@operator_options
def status(as_json: bool, url: str, token: str | None, data_dir: Path) -> None:
    """Nodes (role, last heartbeat, batches held) and queued and running batches per tenant."""
    with Client(url, operator_token(token, data_dir)) as client:
        view = client.json("GET", "/v1/cluster")
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    now = time.time()
    click.echo(f"{'NODE':<40} {'ROLE':<7} {'STATE':<6} {'BEAT':>7} {'HELD':>5}")
    for node in view["nodes"]:
        state = "alive" if node["alive"] else "silent"
        beat = now - node["heartbeat_at"]
        click.echo(f"{node['id']:<40} {node['role']:<7} {state:<6} {beat:>6.1f}s {node['leases_held']:>5}")
    click.echo()
    click.echo(f"{'TENANT':<24} {'ID':<16} {'QUEUED':>7} {'RUNNING':>7}")
    for tenant in view["tenants"]:
        click.echo(f"{tenant['name']:<24} {tenant['tenant_id']:<16} {tenant['queued']:>7} {tenant['running']:>7}")
    if not view["tenants"]:
        click.echo("(no queued or running batches)")
