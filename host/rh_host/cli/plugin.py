"""``rh-host plugin``: scaffold, test locally, pack, and manage plugins on the service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import msgspec

from rh_host.batchfile import read_results
from rh_host.check import PluginCheckFailed, check_plugin
from rh_host.cli._client import Client, key_option, url_option
from rh_host.cli._common import (
    EXIT_FAILED,
    clamped_to,
    default_quotas,
    egress_options,
    exit_for_outcome,
    fail,
    isolation_option,
    json_object_option,
    quota_option,
    sandbox_uids_option,
)
from rh_host.cli._scaffold import C_BUILD, c_plugin_files, c_sdk_header, python_plugin_files
from rh_host.cli.render import render_outcome
from rh_host.errors import HostError
from rh_host.manifest import load_plugin
from rh_host.names import NAME
from rh_host.pipeline import Pipeline
from rh_sandbox import EgressSettings, SandboxError, UidRange, WasmModuleError, make_dispatcher

__all__ = ["pack_directory", "plugin"]


@click.group()
def plugin() -> None:
    """Write, test and upload result handler plugins."""


@plugin.command()
@click.argument("name")
@click.option("--dir", "parent", default=".", type=click.Path(file_okay=False, path_type=Path), help="Parent dir.")
@click.option(
    "--language",
    type=click.Choice(["python", "c"]),
    default="python",
    show_default=True,
    help="python: a sandboxed Python handler; c: a WebAssembly handler in C (built with clang if present).",
)
def init(name: str, parent: Path, language: str) -> None:
    """Scaffold a working plugin NAME (plugin.toml, the handler, sample.jsonl)."""
    if not NAME.match(name):
        fail(f"plugin name {name!r} must match {NAME.pattern}")
    target = parent / name
    if target.exists():
        fail(f"{target} already exists")
    if language == "c":
        header = c_sdk_header()
        if header is None:
            fail("the C SDK (sdk/c/rh_plugin.h) is not part of this installation")
        files = c_plugin_files(name, header)
    else:
        files = python_plugin_files(name)
    target.mkdir(parents=True)
    for filename, text in files.items():
        (target / filename).write_text(text, encoding="utf-8")
    if language == "c":
        (target / "build.sh").chmod(0o755)
        _build_c(target)
    click.echo(f"created {target}; try: rh-host plugin test {target} {target / 'sample.jsonl'}")


def _build_c(target: Path) -> None:
    try:
        built = subprocess.run(C_BUILD, cwd=target, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        click.echo(f"not built ({exc}); install the toolchain and run {target / 'build.sh'}", err=True)
        return
    if built.returncode != 0:
        click.echo(f"not built: {built.stderr.strip()[:500]}\nrun {target / 'build.sh'} once it builds", err=True)
    else:
        click.echo(f"built {target / 'handler.wasm'}", err=True)


@plugin.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("results")
@click.option("--config", "config_json", help="Config overrides as a JSON object (as the API would set them).")
@click.option("--metadata", "metadata_json", help="Batch metadata as a JSON object.")
@isolation_option
@sandbox_uids_option
@egress_options
@quota_option("A ceiling for these runs instead of the operator's default", envvar="RH_DEFAULT_QUOTAS")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON document.")
def test(
    directory: str,
    results: str,
    config_json: str | None,
    metadata_json: str | None,
    isolation: str,
    sandbox_uids: UidRange | None,
    as_json: bool,
    egress: EgressSettings,
    quotas: dict[str, str],
) -> None:
    """Run the plugin in DIRECTORY over RESULTS in the production sandbox; print outcome, logs and usage."""
    config = json_object_option("--config", config_json)
    metadata = json_object_option("--metadata", metadata_json)
    ceilings = default_quotas(quotas)
    try:
        handler = load_plugin(directory, config)
        lines = read_results(results, sys.stdin.buffer)
    except HostError as exc:
        fail(str(exc))
    try:
        with make_dispatcher(isolation, egress=egress, sandbox_uids=sandbox_uids) as dispatcher:
            outcome = Pipeline(dispatcher).run(
                f"test-{handler.name}", lines, metadata, [handler], limits_for=clamped_to(ceilings)
            )
    except SandboxError as exc:
        fail(str(exc), code=EXIT_FAILED)
    click.echo(msgspec.json.encode(outcome).decode() if as_json else render_outcome(outcome, show_logs=True))
    exit_for_outcome(outcome)


@plugin.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--config", "config_json", help="Config overrides as a JSON object (as the API would set them).")
@isolation_option
@sandbox_uids_option
@egress_options
def check(
    directory: str, config_json: str | None, isolation: str, sandbox_uids: UidRange | None, egress: EgressSettings
) -> None:
    """Check that the plugin in DIRECTORY loads, as an upload is checked: its handler imported and
    constructed in the production sandbox (a WASM module compiled and started), nothing run."""
    config = json_object_option("--config", config_json)
    try:
        handler = load_plugin(directory, config)
    except HostError as exc:
        fail(str(exc))
    try:
        with make_dispatcher(isolation, egress=egress, sandbox_uids=sandbox_uids) as dispatcher:
            if handler.manifest.runtime == "wasm":
                wasm = dispatcher.backend("wasm")
                module = Path(handler.directory) / handler.manifest.entry
                wasm.validate(module, group="local", name=handler.manifest.entry)  # type: ignore[attr-defined]
            else:
                check_plugin(dispatcher, handler, group="local")
    except (PluginCheckFailed, WasmModuleError) as exc:
        fail(str(exc), code=EXIT_FAILED)
    except SandboxError as exc:
        fail(f"cannot check here: {exc}", code=EXIT_FAILED)
    manifest = handler.manifest
    click.echo(f"{handler.name} {manifest.version}: loads ({manifest.runtime}, {manifest.entry})")


def _vendor(directory: Path) -> None:
    """Wheels of the plugin's requirements.txt into <plugin>/vendor, so the archive is self-contained."""
    if not (directory / "requirements.txt").is_file():
        return
    try:
        from rh_host.vendoring import vendor_plugin
    except ImportError:
        fail(f"{directory}/requirements.txt: vendoring is not available in this installation")
    try:
        vendored = vendor_plugin(directory)
    except HostError as exc:
        fail(str(exc))
    if vendored is not None:
        click.echo(f"vendored requirements into {vendored}", err=True)


def pack_directory(directory: Path, vendor: bool = True) -> tuple[str, bytes]:
    """Validate and pack a plugin directory: (<name>-<version>.tar.gz, its bytes)."""
    from rh_host.service.archives import pack_directory as pack_tree  # the service's own archive module

    try:
        handler = load_plugin(directory)
    except HostError as exc:
        fail(str(exc))
    if vendor:
        _vendor(directory)
    try:
        data = pack_tree(directory)
    except HostError as exc:
        fail(str(exc))
    return f"{handler.name}-{handler.manifest.version}.tar.gz", data


@plugin.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Archive path.")
@click.option("--no-vendor", is_flag=True, help="Do not vendor requirements.txt (use the vendor/ dir as it is).")
def pack(directory: Path, output: Path | None, no_vendor: bool) -> None:
    """Validate the plugin in DIRECTORY (vendoring its requirements.txt) and write NAME-VERSION.tar.gz."""
    name, data = pack_directory(directory, vendor=not no_vendor)
    target = output or Path(name)
    target.write_bytes(data)
    click.echo(f"wrote {target} ({len(data)} bytes)")


@plugin.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--no-activate", is_flag=True, help="Store the version without making it active.")
@click.option("--no-vendor", is_flag=True, help="Do not vendor requirements.txt when SOURCE is a directory.")
@url_option
@key_option
def push(source: Path, no_activate: bool, no_vendor: bool, url: str, key: str | None) -> None:
    """Upload SOURCE (a plugin directory, packed as by `pack`, or an archive from `pack`) as a new version."""
    data = pack_directory(source, vendor=not no_vendor)[1] if source.is_dir() else source.read_bytes()
    with Client(url, key) as client:
        response = client.call("POST", "/v1/plugins", content=data, params={"activate": str(not no_activate).lower()})
    view = response.json()
    active = view["active"]
    state = "new version" if response.status_code == 201 else "already stored"
    if active is None:
        click.echo(f"{view['name']}: {state}; staged, no version active (rh-host plugin activate {view['name']})")
        return
    click.echo(f"{view['name']}: {state}; active version {view['active_seq']} ({active['version']})")
    if active["limits"]["clamped"]:
        effective = active["limits"]["effective"]
        clamped = ", ".join(f"{f}={effective[f]}" for f in active["limits"]["clamped"])
        click.echo(f"limits clamped to the tenant's ceilings: {clamped}")


@plugin.command("list")
@url_option
@key_option
def list_(url: str, key: str | None) -> None:
    """List your plugins."""
    with Client(url, key) as client:
        rows = client.json("GET", "/v1/plugins")
    click.echo(f"{'NAME':<24} {'STATE':<9} {'ACTIVE':>6} {'VERSION':<12} {'PRI':>4} RUNTIME")
    for row in rows:
        active = row["active"] or {}
        click.echo(
            f"{row['name']:<24} {'enabled' if row['enabled'] else 'disabled':<9} {row['active_seq'] or '-':>6} "
            f"{active.get('version', '-'):<12} {active.get('priority', '-'):>4} {active.get('runtime', '-')}"
        )


def _plugin_action(action: str, name: str, url: str, key: str | None, params: dict[str, str] | None = None) -> None:
    with Client(url, key) as client:
        view = client.json("POST", f"/v1/plugins/{name}/{action}", params=params or {})
    state = "enabled" if view["enabled"] else "disabled"
    click.echo(f"{view['name']}: {state}, active version {view['active_seq']}")


@plugin.command()
@click.argument("name")
@click.option("--version", "seq", type=click.IntRange(1), help="Version number (default: the active one).")
@url_option
@key_option
def activate(name: str, seq: int | None, url: str, key: str | None) -> None:
    """Activate a version of plugin NAME (and enable it)."""
    _plugin_action("activate", name, url, key, {"version": str(seq)} if seq else None)


@plugin.command()
@click.argument("name")
@url_option
@key_option
def disable(name: str, url: str, key: str | None) -> None:
    """Disable plugin NAME: batches submitted from now on do not run it."""
    _plugin_action("disable", name, url, key)


@plugin.command()
@click.argument("name")
@url_option
@key_option
def rollback(name: str, url: str, key: str | None) -> None:
    """Activate the version before the active one."""
    _plugin_action("rollback", name, url, key)


@plugin.command()
@click.argument("name")
@url_option
@key_option
def rm(name: str, url: str, key: str | None) -> None:
    """Delete plugin NAME and all its versions."""
    with Client(url, key) as client:
        client.call("DELETE", f"/v1/plugins/{name}")
    click.echo(f"deleted {name}")
