"""``rh-host tenant``: operator commands, through the API with the operator token.

The token comes from --token, $RH_OPERATOR_TOKEN, or the file ``operator-token`` in --data-dir (where
``rh-host serve`` writes it at first start), so on the server itself no flag is needed.
"""

from __future__ import annotations

from pathlib import Path

import click

from rh_host.cli._client import Client, operator_options, operator_token
from rh_host.cli._common import fail, quota_option

__all__ = ["tenant"]


@click.group()
def tenant() -> None:
    """Create, list and delete tenants (operator)."""


def _numbers(pairs: dict[str, str]) -> dict[str, float | int]:
    numbers: dict[str, float | int] = {}
    for field, text in pairs.items():
        try:
            numbers[field] = int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            fail(f"--quota {field}={text}: not a number")
    return numbers


@tenant.command("create")
@click.argument("name")
@quota_option("A quota of this tenant (others: the operator's defaults)")
@operator_options
def create(name: str, quotas: dict[str, str], url: str, token: str | None, data_dir: Path) -> None:
    """Create tenant NAME and print its API key (shown once: store it now). Quotas not given with
    --quota take the operator's defaults (`rh-host serve --quota`)."""
    request: dict[str, object] = {"name": name}
    if quotas:
        request["quotas"] = _numbers(quotas)
    with Client(url, operator_token(token, data_dir)) as client:
        body = client.json("POST", "/v1/tenants", json=request)
    click.echo(f"tenant {body['name']} ({body['id']})")
    click.echo(f"api key: {body['api_key']}")
    click.echo("the key is shown once; only its hash is stored", err=True)


@tenant.command("list")
@operator_options
def list_(url: str, token: str | None, data_dir: Path) -> None:
    """List tenants and their main quotas."""
    with Client(url, operator_token(token, data_dir)) as client:
        rows = client.json("GET", "/v1/tenants")
    click.echo(f"{'ID':<16} {'NAME':<24} {'PLUGINS':>7} {'CPU s':>6} {'MEM MB':>7} {'CONCURRENT':>10}")
    for row in rows:
        q = row["quotas"]
        click.echo(
            f"{row['id']:<16} {row['name']:<24} {q['max_plugins']:>7} {q['cpu_seconds']:>6g} "
            f"{q['memory_mb']:>7} {q['max_concurrent_batches']:>10}"
        )


@tenant.command("quotas")
@click.argument("tenant_id")
@quota_option("Set this quota")
@operator_options
def quotas_(tenant_id: str, quotas: dict[str, str], url: str, token: str | None, data_dir: Path) -> None:
    """Show tenant TENANT_ID's quotas; with --quota FIELD=VALUE, change those fields first."""
    with Client(url, operator_token(token, data_dir)) as client:
        current = client.json("GET", f"/v1/tenants/{tenant_id}")["quotas"]
        if quotas:
            update = {"quotas": {**current, **_numbers(quotas)}}
            current = client.json("PUT", f"/v1/tenants/{tenant_id}/quotas", json=update)["quotas"]
    for field, value in current.items():
        click.echo(f"{field:<24} {value:g}")


@tenant.command("delete")
@click.argument("tenant_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@operator_options
def delete(tenant_id: str, yes: bool, url: str, token: str | None, data_dir: Path) -> None:
    """Delete a tenant (by id) with its plugins, batches and outcomes."""
    if not yes:
        click.confirm(f"delete tenant {tenant_id} and everything it owns?", abort=True)
    with Client(url, operator_token(token, data_dir)) as client:
        client.call("DELETE", f"/v1/tenants/{tenant_id}")
    click.echo(f"deleted {tenant_id}")
