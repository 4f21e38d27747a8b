"""vendor_paths: a plugin's own vendor/ dir, and nothing outside the plugin."""

from __future__ import annotations

import os
from pathlib import Path

from rh_sdk._vendor import vendor_paths


def test_vendor_dir_is_returned(tmp_path: Path) -> None:
    (tmp_path / "vendor").mkdir()
    assert vendor_paths(str(tmp_path)) == [str(tmp_path / "vendor")]


def test_no_vendor_dir(tmp_path: Path) -> None:
    assert vendor_paths(str(tmp_path)) == []
    (tmp_path / "vendor").write_text("not a dir")
    assert vendor_paths(str(tmp_path)) == []


def test_symlink_out_of_the_plugin_is_ignored(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    os.symlink("/usr/lib/python3/dist-packages", plugin / "vendor")
    assert vendor_paths(str(plugin)) == []


def test_symlink_inside_the_plugin_is_followed(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    os.symlink("wheels", tmp_path / "vendor")
    assert vendor_paths(str(tmp_path)) == [str((tmp_path / "wheels").resolve())]


def test_symlink_to_a_file_or_nowhere_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "wheel.txt").write_text("x")
    os.symlink("wheel.txt", tmp_path / "vendor")
    assert vendor_paths(str(tmp_path)) == []
    os.unlink(tmp_path / "vendor")
    os.symlink("missing", tmp_path / "vendor")
    assert vendor_paths(str(tmp_path)) == []
