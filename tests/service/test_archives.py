"""Unpacking plugin archives safely (rh_host.service.archives); the upload path is in test_uploads."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from rh_host.service.archives import unpack_archive
from rh_host.service.errors import UploadRejected
from rh_host.service.settings import UploadCaps


def _tar(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["/abs", "a/../../b", "..", "C:/win", "a\\b", "a/../../../etc/cron.d/x"])
def test_unsafe_names_are_refused_before_writing(tmp_path: Path, name: str) -> None:
    with pytest.raises(UploadRejected):
        unpack_archive(_tar(name), tmp_path, UploadCaps())
    assert list(tmp_path.iterdir()) == []


def test_dot_segments_are_harmless(tmp_path: Path) -> None:
    unpack_archive(_tar("./a/./b.txt"), tmp_path, UploadCaps())
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["__pycache__/handler.cpython-311.pyc", "pkg/mod.pyc", "x.pyo", "a/__pycache__/b"])
def test_compiled_bytecode_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UploadRejected, match="compiled bytecode is not accepted"):
        unpack_archive(_tar(name), tmp_path, UploadCaps())
    assert list(tmp_path.iterdir()) == []
