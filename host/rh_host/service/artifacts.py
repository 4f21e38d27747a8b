"""Plugin artifacts on disk, content-addressed: ``<root>/<sha256[:2]>/<sha256>/`` holds an unpacked,
validated plugin directory whose files have that digest.

The digest is of the unpacked files (their paths and bytes), not of the archive: an archive carries
timestamps (gzip's header, every tar and zip entry), so packing the same plugin twice a second apart
gives different bytes, and a tenant re-uploading unchanged files must get the version it already
has. An upload is unpacked into a private temporary directory and renamed into place only when
valid, so a directory under its digest is always complete. The same files uploaded twice (by anyone)
are stored once; a tenant never reaches another's plugin except through its own database rows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec

from rh_host.errors import ManifestError
from rh_host.manifest import MANIFEST_NAME, Manifest, parse_manifest
from rh_host.service.archives import normalise_modes, unpack_archive
from rh_host.service.errors import UploadRejected
from rh_host.service.settings import UploadCaps

__all__ = ["Artifact", "ArtifactStore", "ModuleCheck", "tree_digest"]

ModuleCheck = Callable[[Path, str], None]
"""Checks a WASM module (its path, its name in the archive) where its tenant's runs would meet it;
raises UploadRejected naming what is wrong with it."""


class Artifact(msgspec.Struct, frozen=True, kw_only=True):
    digest: str
    directory: str
    manifest: Manifest


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes, caps: UploadCaps, check_module: ModuleCheck) -> Artifact:
        """Validate and store an archive; the artifact of an earlier upload of the same files is reused.
        A WASM entry module is checked by ``check_module`` (compiled, its start function run)."""
        work = Path(tempfile.mkdtemp(prefix="upload-", dir=self._staging))
        try:
            unpack_archive(data, work, caps)
            root = _plugin_root(work)
            manifest = _read_manifest(root)
            _check_entry(root, manifest, check_module)
            normalise_modes(root)
            digest = tree_digest(root)
            final = self.path_for(digest)
            if not final.is_dir():
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(root, final)
                except OSError:
                    if not final.is_dir():  # not a concurrent upload of the same files: a real failure
                        raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Artifact(digest=digest, directory=str(final), manifest=manifest)


def tree_digest(root: Path) -> str:
    """SHA-256 over every entry under ``root`` in path order: its kind, relative path, size and bytes.

    Modes are left out because ``normalise_modes`` has made them all alike. NULs separate the fields
    and a path cannot contain one, and each file's size precedes its bytes, so two different trees
    never feed the hash the same bytes.
    """
    digest = hashlib.sha256()
    # sorted by the UTF-8 bytes of the relative path: Path's own ordering changed between Python versions
    entries = sorted((os.fsencode(path.relative_to(root).as_posix()), path) for path in root.rglob("*"))
    for name, path in entries:
        if path.is_dir():
            digest.update(b"d\0" + name + b"\0")
            continue
        data = path.read_bytes()
        digest.update(b"f\0" + name + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


def _plugin_root(work: Path) -> Path:
    if (work / MANIFEST_NAME).is_file():
        return work
    entries = list(work.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / MANIFEST_NAME).is_file():
        return entries[0]
    raise UploadRejected(f"no {MANIFEST_NAME} at the archive's root or in its single top-level directory")


def _read_manifest(root: Path) -> Manifest:
    try:
        text = (root / MANIFEST_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UploadRejected(f"{MANIFEST_NAME}: cannot read: {exc}") from None
    try:
        return parse_manifest(text, MANIFEST_NAME, root)
    except ManifestError as exc:
        raise UploadRejected(str(exc)) from None


def _check_entry(root: Path, manifest: Manifest, check_module: ModuleCheck) -> None:
    if manifest.runtime == "python":
        module = manifest.entry.partition(":")[0].replace(".", "/")
        if not ((root / f"{module}.py").is_file() or (root / module / "__init__.py").is_file()):
            raise UploadRejected(f"{MANIFEST_NAME}: field `entry`: module {module!r} is not in the archive")
        return
    check_module(root / manifest.entry, manifest.entry)  # .wasm or .wat (parse_manifest saw to that)
