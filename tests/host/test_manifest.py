"""plugin.toml validation: every error names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rh_host.errors import HostError, ManifestError
from rh_host.manifest import load_plugin, parse_manifest
from rh_sandbox import Limits

VALID = """\
name = "stats"
version = "1.0.0"
runtime = "python"
entry = "handler:Stats"
priority = 10

[limits]
cpu_seconds = 5
memory_mb = 128

[config]
threshold = 0.2
"""


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "plugin.toml").write_text(text)
    return directory


def test_a_valid_manifest_loads(tmp_path: Path) -> None:
    plugin = load_plugin(write(tmp_path / "p", VALID))
    assert plugin.name == "stats" and plugin.priority == 10
    assert plugin.manifest.limits == Limits(cpu_seconds=5, memory_mb=128)
    assert plugin.manifest.encoding == "msgpack"
    assert plugin.config == {"threshold": 0.2}
    assert plugin.directory == str((tmp_path / "p").resolve())
    spec = plugin.run_spec()
    assert (spec.name, spec.entry, spec.runtime, spec.version) == ("stats", "handler:Stats", "python", "1.0.0")


def test_defaults(tmp_path: Path) -> None:
    text = 'name = "p"\nversion = "1"\nruntime = "python"\nentry = "m:C"\n'
    plugin = load_plugin(write(tmp_path, text))
    assert plugin.priority == 100 and plugin.manifest.limits == Limits() and plugin.config == {}


def test_config_overrides_and_config_priority_wins(tmp_path: Path) -> None:
    plugin = load_plugin(write(tmp_path, VALID), {"priority": 3, "threshold": 0.9})
    assert plugin.priority == 3 and plugin.config["threshold"] == 0.9


def test_config_priority_must_be_an_integer(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"plugin\.toml: field `config\.priority`"):
        load_plugin(write(tmp_path, VALID), {"priority": "high"})


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('name = "stats"', 'name = "Bad Name!"', "`name`"),
        ('name = "stats"\n', "", "`name`"),
        ('version = "1.0.0"', 'version = ""', "`version`"),
        ('version = "1.0.0"\n', "", "`version`"),
        ('runtime = "python"', 'runtime = "ruby"', "`runtime`"),
        ('entry = "handler:Stats"', 'entry = "handler.Stats"', "`entry`"),
        ('entry = "handler:Stats"', 'entry = "handler:"', "`entry`"),
        ('entry = "handler:Stats"', 'entry = "../x:Stats"', "`entry`"),
        ("priority = 10", 'priority = "high"', "`priority`"),
        ("priority = 10", "prority = 10", "`prority`"),  # a typo is refused, not ignored
        ("priority = 10", 'priority = 10\nencoding = "xml"', "`encoding`"),
        ("priority = 10", 'priority = 10\nsecrets = [""]', "`secrets`"),
        ("cpu_seconds = 5", "cpu_secs = 5", "`cpu_secs` - at `limits`"),
        ("memory_mb = 128", 'memory_mb = "lots"', "`limits.memory_mb`"),
        ("memory_mb = 128", "memory_mb = 0", "`limits.memory_mb`"),
        ("cpu_seconds = 5", "cpu_seconds = -1", "`limits.cpu_seconds`"),
        ("cpu_seconds = 5", "cpu_seconds = nan", "`limits.cpu_seconds`"),
        ("cpu_seconds = 5", "cpu_seconds = inf", "`limits.cpu_seconds`"),
        ("cpu_seconds = 5", "wall_seconds = -inf", "`limits.wall_seconds`"),
        ("[config]\nthreshold = 0.2", "config = 3", "`config`"),
    ],
)
def test_each_field_error_names_the_file_and_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in VALID
    directory = write(tmp_path / "plug", VALID.replace(old, new))
    with pytest.raises(ManifestError) as info:
        load_plugin(directory)
    message = str(info.value)
    assert message.startswith(str(directory / "plugin.toml") + ": "), message
    assert "\n" not in message
    assert field in message, message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"plugin\.toml: invalid TOML"):
        load_plugin(write(tmp_path, "name = \n"))


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"plugin\.toml: no such file"):
        load_plugin(tmp_path)


def test_manifest_error_is_a_host_error() -> None:
    assert issubclass(ManifestError, HostError)


WASM = 'name = "w"\nversion = "1"\nruntime = "wasm"\nentry = "{entry}"\n'


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("handler.py", "must be a .wasm or .wat file"),
        ("/abs/handler.wasm", "must be a path inside the plugin directory"),
        ("../outside.wasm", "must be a path inside the plugin directory"),
        ("sub/../../x.wat", "must be a path inside the plugin directory"),
        ("missing.wasm", "does not exist in the plugin directory"),
    ],
)
def test_wasm_entry_rules(tmp_path: Path, entry: str, message: str) -> None:
    directory = write(tmp_path / "w", WASM.format(entry=entry))
    with pytest.raises(ManifestError, match="field `entry`") as info:
        load_plugin(directory)
    assert message in str(info.value)


@pytest.mark.parametrize("entry", ["handler.wasm", "build/handler.wat"])
def test_wasm_entry_inside_the_directory_is_accepted(tmp_path: Path, entry: str) -> None:
    directory = write(tmp_path / "w", WASM.format(entry=entry))
    (directory / entry).parent.mkdir(parents=True, exist_ok=True)
    (directory / entry).write_bytes(b"\0asm\1\0\0\0")
    assert load_plugin(directory).manifest.entry == entry


def test_parse_manifest_without_a_directory_skips_the_existence_check() -> None:
    manifest = parse_manifest(WASM.format(entry="handler.wasm"), "inline.toml")
    assert manifest.runtime == "wasm"
    with pytest.raises(ManifestError, match=r"^inline\.toml: "):
        parse_manifest(WASM.format(entry="../x.wasm"), "inline.toml")


def test_the_sample_plugins_are_valid(repo_root: Path) -> None:
    plugins = [load_plugin(d) for d in sorted((repo_root / "sample_plugins" / "python").iterdir()) if d.is_dir()]
    assert {p.name for p in plugins} >= {"stats_summary", "error_collector", "jsonl_exporter"}


def test_limits_above_every_ceiling_are_kept_as_asked_and_clamped_at_run_time(tmp_path: Path) -> None:
    """A manifest's limits are requests: parsing keeps them, the run spec gets the clamped ones."""
    from rh_host.service.limits import clamp_limits
    from rh_host.service.settings import Quotas

    huge = VALID.replace(
        "memory_mb = 128", "memory_mb = 128\nmax_processes = 6000\nscratch_mb = 100000\nmax_open_files = 1000000"
    )
    plugin = load_plugin(write(tmp_path / "p", huge))
    asked = plugin.manifest.limits
    assert (asked.max_processes, asked.scratch_mb, asked.max_open_files) == (6000, 100000, 1000000)
    spec = plugin.run_spec("tenant", clamp_limits(asked, Quotas(max_processes=20)).effective)
    assert (spec.limits.max_processes, spec.limits.scratch_mb, spec.limits.max_open_files) == (20, 256, 1024)
    assert spec.limits.cpu_seconds == 5 and spec.limits.memory_mb == 128  # below their ceilings: as asked
    assert plugin.run_spec("tenant").limits == asked  # no clamp given: the manifest's own (callers always give one)
