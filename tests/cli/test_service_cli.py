"""The tenant, plugin and batch commands against a real ``rh-host serve`` (the operator token it wrote
itself, the key the tenant command printed, and one-line errors with exit code 2)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from rh_testserver import OPENAI, RH_HOST, SAMPLE_PLUGINS, Server, cleanup, public_tempdir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, Path]]:
    root = public_tempdir("rh-cli-service-")
    server = Server(root / "data", env={"RH_OPERATOR_TOKEN": ""}).start()
    try:
        yield server, root
    finally:
        server.stop()
        cleanup(root)


def cli(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("RH_KEY", "RH_URL", "RH_OPERATOR_TOKEN")}
    return subprocess.run(
        [RH_HOST, *map(str, args)], capture_output=True, text=True, env={**clean, **(env or {})}, cwd=cwd, timeout=180
    )


def test_operator_token_file_is_private(served: tuple[Server, Path]) -> None:
    server, _ = served
    token_file = server.data_dir / "operator-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((server.data_dir / "secret-key").stat().st_mode) == 0o600
    for database_file in server.data_dir.glob("rh-host.db*"):
        assert stat.S_IMODE(database_file.stat().st_mode) == 0o600, database_file
    assert token_file.read_text().strip() not in server.log()


def test_tenant_plugin_batch_commands(served: tuple[Server, Path]) -> None:
    server, root = served
    created = cli("tenant", "create", "acme", "--url", server.url, "--data-dir", server.data_dir)
    assert created.returncode == 0, created.stderr
    key = re.search(r"api key: (\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    tenant_id = re.search(r"\((t_\w+)\)", created.stdout).group(1)  # type: ignore[union-attr]
    listed = cli("tenant", "list", "--url", server.url, "--data-dir", server.data_dir)
    assert "acme" in listed.stdout and tenant_id in listed.stdout
    env = {"RH_URL": server.url, "RH_KEY": key}

    work = root / "work"
    work.mkdir()
    assert cli("plugin", "init", "hello", "--dir", work).returncode == 0
    tested = cli("plugin", "test", work / "hello", work / "hello" / "sample.jsonl")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "hello.results: 2" in tested.stdout and "INFO    counted" in tested.stdout
    assert "SUCCESS" in tested.stdout and "PEAK RSS" in tested.stdout
    strict = cli(
        "plugin", "test", work / "hello", work / "hello" / "sample.jsonl", "--config", '{"fail_above_error_rate": 0.1}'
    )
    assert strict.returncode == 1 and "error rate 0.50 is above 0.10" in strict.stdout

    packed = cli("plugin", "pack", work / "hello", "-o", work / "hello.tar.gz")
    assert packed.returncode == 0 and (work / "hello.tar.gz").exists()
    pushed = cli("plugin", "push", work / "hello.tar.gz", env=env)
    assert pushed.returncode == 0 and "hello: new version; active version 1" in pushed.stdout
    assert cli("plugin", "push", SAMPLE_PLUGINS[0], env=env).returncode == 0
    plugins = cli("plugin", "list", env=env).stdout
    assert re.search(r"hello\s+enabled\s+1\s+0\.1\.0", plugins) and "stats_summary" in plugins

    submitted = cli("batch", "submit", OPENAI, "--id", "cli-1", "--metadata", '{"m": 1}', "--wait", env=env)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "hello.results: 8" in submitted.stdout and "total: 8" in submitted.stdout


def test_batch_outcome_and_errors(served: tuple[Server, Path]) -> None:
    server, _ = served
    created = cli("tenant", "create", "beta", "--url", server.url, "--data-dir", server.data_dir)
    key = re.search(r"api key: (\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    env = {"RH_URL": server.url, "RH_KEY": key}
    assert cli("plugin", "push", SAMPLE_PLUGINS[0], env=env).returncode == 0
    done = cli("batch", "submit", OPENAI, "--id", "b-1", "--wait", env=env)
    assert done.returncode == 0, done.stderr
    assert "SUCCESS" in done.stdout and "total: 8" in done.stdout
    assert "done, success=true" in cli("batch", "status", "b-1", env=env).stdout
    as_json = cli("batch", "outcome", "b-1", "--json", env=env)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["output"]["total"] == 8
    again = cli("batch", "submit", OPENAI, "--id", "b-1", env=env)
    assert "already submitted" in again.stdout
    big = json.dumps({"notes": "n" * 100_000})  # over what a URL carries: it travels in the body
    large = cli("batch", "submit", OPENAI, "--id", "b-big", "--metadata", big, env=env)
    assert large.returncode == 0 and "b-big: queued, 8 results" in large.stdout, large.stderr
    absent = cli("batch", "submit", "/nonexistent/results.jsonl", env=env)
    assert absent.returncode == 2 and absent.stderr.count("\n") == 1 and "cannot read" in absent.stderr

    missing = cli("batch", "status", "nope", env=env)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "rh-host: error: no batch 'nope' (not_found, HTTP 404)"
    bad_key = cli("batch", "status", "b-1", env={**env, "RH_KEY": "rhk_wrong"})
    assert bad_key.returncode == 2 and "invalid API key" in bad_key.stderr
    no_key = cli("plugin", "list", env={"RH_URL": server.url})
    assert no_key.returncode == 2 and "no key" in no_key.stderr
    unreachable = cli("plugin", "list", env={"RH_URL": "http://127.0.0.1:9", "RH_KEY": key})
    assert unreachable.returncode == 1 and unreachable.stderr.startswith("rh-host: error: cannot reach")
    rollback = cli("plugin", "rollback", "stats_summary", env=env)
    assert rollback.returncode == 2 and "no version older" in rollback.stderr

    assert "disabled" in cli("plugin", "disable", "stats_summary", env=env).stdout
    assert "enabled, active version 1" in cli("plugin", "activate", "stats_summary", env=env).stdout
    assert cli("plugin", "rm", "stats_summary", env=env).returncode == 0
    assert "stats_summary" not in cli("plugin", "list", env=env).stdout

    tenant_id = re.search(r"\((t_\w+)\)", created.stdout).group(1)  # type: ignore[union-attr]
    deleted = cli("tenant", "delete", tenant_id, "--yes", "--url", server.url, "--data-dir", server.data_dir)
    assert deleted.returncode == 0
    assert cli("batch", "status", "b-1", env=env).returncode == 2  # the key is gone with the tenant


def test_c_webassembly_plugin_from_init_to_outcome(served: tuple[Server, Path]) -> None:
    server, root = served
    work = root / "wasm-work"
    work.mkdir()
    created = cli("plugin", "init", "hello_c", "--language", "c", "--dir", work)
    assert created.returncode == 0, created.stderr
    if not (work / "hello_c" / "handler.wasm").exists():
        pytest.skip(f"no C-to-wasm toolchain here: {created.stderr.strip()}")
    tested = cli("plugin", "test", work / "hello_c", work / "hello_c" / "sample.jsonl")
    assert tested.returncode == 0 and "hello_c.failed: 1" in tested.stdout, tested.stdout + tested.stderr
    tenant = cli("tenant", "create", "wasm-tenant", "--url", server.url, "--data-dir", server.data_dir)
    key = re.search(r"api key: (\S+)", tenant.stdout).group(1)  # type: ignore[union-attr]
    env = {"RH_URL": server.url, "RH_KEY": key}
    pushed = cli("plugin", "push", work / "hello_c", env=env)  # the service validates the module
    assert pushed.returncode == 0, pushed.stderr
    done = cli("batch", "submit", OPENAI, "--id", "wasm-1", "--wait", env=env)
    assert done.returncode == 0 and "hello_c.results: 8" in done.stdout, done.stdout + done.stderr
    (work / "hello_c" / "handler.wasm").write_bytes(b"\0asm\1\0\0\0garbage")
    refused = cli("plugin", "push", work / "hello_c", env=env)
    assert refused.returncode == 2 and "upload_rejected" in refused.stderr


def test_quota_options_of_serve_and_tenant() -> None:
    """`serve --quota` sets the operator's defaults; `tenant create --quota` and `tenant quotas` set a
    tenant's own, and a tenant created without them keeps the defaults."""
    root = public_tempdir("rh-cli-quotas-")
    env = {"RH_OPERATOR_TOKEN": "", "RH_DEFAULT_QUOTAS": "max_processes=8 max_stored_batches=5"}
    server = Server(root / "data", env=env).start()
    try:
        common = ("--url", server.url, "--data-dir", server.data_dir)
        plain = cli("tenant", "create", "plain", *common)
        roomy = cli("tenant", "create", "roomy", "--quota", "max_processes=16", *common)
        assert plain.returncode == 0 and roomy.returncode == 0, plain.stderr + roomy.stderr
        plain_id = re.search(r"\((t_\w+)\)", plain.stdout).group(1)  # type: ignore[union-attr]
        roomy_id = re.search(r"\((t_\w+)\)", roomy.stdout).group(1)  # type: ignore[union-attr]
        shown = cli("tenant", "quotas", plain_id, *common).stdout
        assert re.search(r"max_processes\s+8\n", shown) and re.search(r"max_stored_batches\s+5\n", shown)
        shown = cli("tenant", "quotas", roomy_id, *common).stdout
        assert re.search(r"max_processes\s+16\n", shown) and re.search(r"max_stored_batches\s+5\n", shown)
        changed = cli("tenant", "quotas", plain_id, "--quota", "max_versions=3", *common)
        assert changed.returncode == 0 and re.search(r"max_versions\s+3\n", changed.stdout), changed.stderr
        assert re.search(r"max_processes\s+8\n", changed.stdout)  # the other fields stay
        bad = cli("tenant", "quotas", plain_id, "--quota", "max_versions=0", *common)
        assert bad.returncode == 2 and "max_versions must be positive" in bad.stderr
        unknown = cli("tenant", "create", "odd", "--quota", "max_everything=1", *common)
        assert unknown.returncode == 2 and "max_everything" in unknown.stderr
    finally:
        server.stop()
        cleanup(root)
    refused = cli("serve", "--quota", "max_processes", "--migrate-only", "--data-dir", root / "never")
    assert refused.returncode == 2 and "expected FIELD=VALUE" in refused.stderr


def test_pack_is_reproducible_and_unpacks_as_the_service_does(tmp_path: Path) -> None:
    from rh_host.service.archives import unpack_archive
    from rh_host.service.settings import UploadCaps

    plugin = tmp_path / "plugin"
    shutil.copytree(SAMPLE_PLUGINS[0], plugin, ignore=shutil.ignore_patterns("__pycache__"))
    (plugin / ".git").mkdir()
    (plugin / ".git" / "config").write_text("left out")
    first = cli("plugin", "pack", plugin, "--no-vendor", "-o", tmp_path / "one.tar.gz")
    os.utime(plugin / "plugin.toml", (1, 1))  # another time stamp: the same archive
    second = cli("plugin", "pack", plugin, "--no-vendor", "-o", tmp_path / "two.tar.gz")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    packed = (tmp_path / "one.tar.gz").read_bytes()
    assert packed == (tmp_path / "two.tar.gz").read_bytes()
    unpack_archive(packed, tmp_path / "unpacked", UploadCaps())
    files = {p.relative_to(tmp_path / "unpacked").as_posix() for p in (tmp_path / "unpacked").rglob("*") if p.is_file()}
    assert files == {
        p.relative_to(plugin).as_posix() for p in plugin.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    (plugin / "link.py").symlink_to(plugin / "plugin.toml")
    refused = cli("plugin", "pack", plugin, "--no-vendor", "-o", tmp_path / "three.tar.gz")
    assert refused.returncode == 2 and "symlinks cannot be packed" in refused.stderr
