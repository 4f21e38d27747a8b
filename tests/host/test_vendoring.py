"""Manifest network grants and the vendoring helper's refusals (real vendoring runs in tests/integrations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rh_host.errors import ManifestError
from rh_host.manifest import parse_manifest
from rh_host.vendoring import VendoringError, vendor_plugin

BASE = 'name = "p"\nversion = "1"\nruntime = "python"\nentry = "handler:H"\n'


def test_manifest_accepts_grants() -> None:
    manifest = parse_manifest(BASE + 'allowed_hosts = ["hooks.example.com:443", "127.0.0.1:5432"]\n')
    assert manifest.allowed_hosts == ["hooks.example.com:443", "127.0.0.1:5432"]
    assert parse_manifest(BASE).allowed_hosts == []


def test_manifest_names_a_bad_grant() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(BASE + 'allowed_hosts = ["hooks.example.com"]\n')
    assert "field `allowed_hosts`" in str(info.value) and "'hooks.example.com'" in str(info.value)


def test_vendor_plugin_without_requirements_does_nothing(tmp_path: Path) -> None:
    assert vendor_plugin(tmp_path) is None
    (tmp_path / "requirements.txt").write_text("# nothing\n\n")
    assert vendor_plugin(tmp_path) is None
    assert not (tmp_path / "vendor").exists()


@pytest.mark.parametrize("line", ["-r other.txt", "--index-url https://evil.example/simple", "-e ."])
def test_vendor_plugin_refuses_pip_options(tmp_path: Path, line: str) -> None:
    (tmp_path / "requirements.txt").write_text(f"requests\n{line}\n")
    with pytest.raises(VendoringError, match="only package specifiers"):
        vendor_plugin(tmp_path)


def test_vendoring_is_wheels_only_and_reports_pip_failure(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("rh-host-no-such-package-xyz==0.0.1\n")
    with pytest.raises(VendoringError, match="pip could not vendor"):
        vendor_plugin(tmp_path, timeout_seconds=120)
    assert not (tmp_path / "vendor").exists()
    assert not list(tmp_path.glob(".vendor-*"))  # staging cleaned up
