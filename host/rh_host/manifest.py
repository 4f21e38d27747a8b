"""Plugin manifests: ``plugin.toml`` in a plugin directory, validated field by field.

name = "stats_summary"          # [a-z0-9][a-z0-9_.-]*
version = "1.0.0"
runtime = "python"              # or "wasm"
entry = "handler:StatsHandler"  # python: module:Class; wasm: handler.wasm (or .wat)
priority = 10                   # lower runs first (default 100)
encoding = "msgpack"            # or "json"

[limits]                        # each optional; defaults in rh_sandbox.Limits
cpu_seconds = 5                 # every limit is a request: the host clamps each to a ceiling of the
memory_mb = 128                 # same name (the tenant's quotas, or the operator's defaults) before a
wall_seconds = 10               # run (rh_host.service.limits), and shows requested and effective
max_output_kb = 256
max_processes = 16

[config]                        # defaults handed to the handler's __init__
threshold = 0.2
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from rh_host.errors import ManifestError
from rh_host.names import NAME
from rh_sandbox import GrantError, Limits, RunSpec, parse_grants
from rh_sdk.protocol import Encoding

__all__ = ["MANIFEST_NAME", "Manifest", "Plugin", "load_plugin", "parse_manifest"]

MANIFEST_NAME = "plugin.toml"
_PY_ENTRY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class Manifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    version: str
    runtime: Literal["python", "wasm"]
    entry: str
    priority: int = 100
    encoding: Encoding = "msgpack"
    description: str = ""
    limits: Limits = Limits()
    config: dict[str, Any] = {}
    secrets: list[str] = []  # config keys whose values are secret (never logged or shown in full)
    allowed_hosts: list[str] = []  # network grants, host:port (docs/network-grants.md); none = no network


class Plugin(msgspec.Struct, frozen=True, kw_only=True):
    """A validated plugin: its manifest, where it lives, and the config its runs get."""

    manifest: Manifest
    directory: str
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def priority(self) -> int:
        """Effective priority: the config's ``priority`` (the guide's way) overrides the manifest's."""
        value = self.config.get("priority", self.manifest.priority)
        return int(value)

    def run_spec(self, group: str = "default", limits: Limits | None = None) -> RunSpec:
        return RunSpec(
            name=self.manifest.name,
            runtime=self.manifest.runtime,
            plugin_dir=self.directory,
            entry=self.manifest.entry,
            encoding=self.manifest.encoding,
            limits=limits or self.manifest.limits,
            group=group,
            version=self.manifest.version,
            allowed_hosts=tuple(self.manifest.allowed_hosts),
        )


def _field_path(error: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.limits.cpu_seconds`"; keep the message, make the path TOML-like
    return str(error).replace("`$.", "`").replace("- at `$`", "- at top level")


def parse_manifest(text: str, source: str = MANIFEST_NAME, plugin_dir: Path | None = None) -> Manifest:
    """Validate a manifest's text; ``ManifestError`` names the file and the field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{source}: invalid TOML: {exc}") from None
    try:
        manifest = msgspec.convert(data, Manifest)
    except msgspec.ValidationError as exc:
        raise ManifestError(f"{source}: {_field_path(exc)}") from None
    problems = _check(manifest, plugin_dir)
    if problems:
        raise ManifestError(f"{source}: {problems[0]}")
    return manifest


def _check(m: Manifest, plugin_dir: Path | None) -> list[str]:
    problems: list[str] = []
    if not NAME.match(m.name):
        problems.append(f"field `name`: {m.name!r} must match {NAME.pattern}")
    if not m.version or len(m.version) > 64 or not m.version.isprintable():
        problems.append("field `version`: must be a non-empty printable string of at most 64 characters")
    if m.runtime == "python" and not _PY_ENTRY.match(m.entry):
        problems.append(f"field `entry`: {m.entry!r} must be module:Class for runtime python")
    if m.runtime == "wasm":
        entry = Path(m.entry)
        if not m.entry.endswith((".wasm", ".wat")):
            problems.append(f"field `entry`: {m.entry!r} must be a .wasm or .wat file for runtime wasm")
        elif entry.is_absolute() or ".." in entry.parts:
            problems.append(f"field `entry`: {m.entry!r} must be a path inside the plugin directory")
        elif plugin_dir is not None and not (plugin_dir / entry).is_file():
            problems.append(f"field `entry`: {m.entry!r} does not exist in the plugin directory")
    for field in m.limits.__struct_fields__:
        value = getattr(m.limits, field)
        # TOML has nan and inf; `nan <= 0` is False, so test for the good case
        if not (value > 0 and math.isfinite(value)):
            problems.append(f"field `limits.{field}`: must be a positive finite number")
    for key in m.secrets:
        if not isinstance(key, str) or not key:
            problems.append("field `secrets`: must list config key names")
    try:
        parse_grants(m.allowed_hosts)
    except GrantError as exc:
        problems.append(f"field `allowed_hosts`: {exc}")
    return problems


def load_plugin(directory: str | Path, config: dict[str, Any] | None = None) -> Plugin:
    """Load and validate the plugin in ``directory``; ``config`` overrides the manifest's defaults."""
    path = Path(directory)
    manifest_path = path / MANIFEST_NAME
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{manifest_path}: no such file (a plugin needs a {MANIFEST_NAME})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{manifest_path}: cannot read: {exc}") from None
    manifest = parse_manifest(text, str(manifest_path), path)
    merged = {**manifest.config, **(config or {})}
    if "priority" in merged and not isinstance(merged["priority"], int):
        raise ManifestError(f"{manifest_path}: field `config.priority`: must be an integer")
    return Plugin(manifest=manifest, directory=str(path.resolve()), config=merged)
