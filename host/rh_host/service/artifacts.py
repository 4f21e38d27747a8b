"""Plugin artifacts on disk, content-addressed: ``<root>/<sha256[:2]>/<sha256>/`` holds an unpacked,
validated plugin directory whose files have that digest.

The digest is of the unpacked files (their paths and bytes), not of the archive: an archive carries
timestamps (gzip's header, every tar and zip entry), so packing the same plugin twice a second apart
gives different bytes, and a tenant re-uploading unchanged files must get the version it already
has. An upload is unpacked into a private temporary directory and renamed into place only when
valid, so a directory under its digest is always complete. The same files uploaded twice (by anyone)
are stored once; a tenant never reaches another's plugin except through its own database rows.

An artifact lives while a stored version references it. An upload pins its digest from the moment
its directory is in place until its version is committed (or refused); garbage collection removes
unpinned, unreferenced artifacts (after a refused upload, a deleted plugin or tenant, and
periodically). The pin and the removal take one lock, so an upload never loses the directory it
is about to reference. Staging directories a crashed process left behind are removed at start.

The database holds every version's archive as uploaded (``Store.add_version``), so a worker node on
another machine gets a plugin's files with ``local_copy``: its own copy when it has one, else the
archive, unpacked and checked against the digest. A copy is verified (its digest recomputed) the
first time this process uses it; a copy that does not match is replaced. A node that cannot get the
files raises ``ArtifactUnavailable``: the batch is not run and not marked done.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from rh_host.errors import ManifestError
from rh_host.manifest import MANIFEST_NAME, Manifest, parse_manifest
from rh_host.service.archives import normalise_modes, unpack_archive
from rh_host.service.errors import PayloadTooLarge, UploadRejected
from rh_host.service.settings import UploadCaps

__all__ = ["Artifact", "ArtifactStore", "ArtifactUnavailable", "ModuleCheck", "tree_digest"]

_log = logging.getLogger("rh.service.artifacts")

BYTECODE_DIR = "__pycache__"

ModuleCheck = Callable[[Path, str], None]
"""Checks a WASM module (its path, its name in the archive) where its tenant's runs would meet it;
raises UploadRejected naming what is wrong with it."""


class ArtifactUnavailable(Exception):
    """This node cannot get a plugin version's files: not on disk, and the database has no archive
    for its digest, or one that does not unpack to files of that digest."""


ArchiveSource = Callable[[str], bytes | None]
"""The stored archive of a digest (``Store.artifact_archive``), None when there is none."""


class Artifact(msgspec.Struct, frozen=True, kw_only=True):
    digest: str
    directory: str
    manifest: Manifest
    size_bytes: int  # of its files: what the tenant's max_artifact_mb counts


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / ".staging"
        shutil.rmtree(self._staging, ignore_errors=True)  # uploads and removals a crash interrupted
        self._staging.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # guards _pins and every rename into or out of place
        self._pins: Counter[str] = Counter()
        self._verified: set[str] = set()  # copies on disk whose digest this process has recomputed

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    @contextmanager
    def upload(
        self, data: bytes, caps: UploadCaps, check_module: ModuleCheck, *, referenced: Callable[[str], bool]
    ) -> Iterator[Artifact]:
        """Store an archive (see ``_put``) and keep it pinned while the block records its version; if
        afterwards no version references it (the block raised: refused), it is removed again."""
        artifact = self._put(data, caps, check_module)
        try:
            yield artifact
        finally:
            with self._lock:
                self._pins[artifact.digest] -= 1
                if self._pins[artifact.digest] <= 0:
                    del self._pins[artifact.digest]
                    if not referenced(artifact.digest):
                        self._move_out(artifact.digest)
            self._empty_staging_of_removed()

    def _put(self, data: bytes, caps: UploadCaps, check_module: ModuleCheck) -> Artifact:
        """Validate and store an archive, pinned (``upload`` releases the pin); the artifact of an
        earlier upload of the same files is reused. A WASM entry module is checked by ``check_module``
        (compiled, its start function run). Nothing of a refused archive stays on disk."""
        work = Path(tempfile.mkdtemp(prefix="upload-", dir=self._staging))
        try:
            unpack_archive(data, work, caps)
            root = _plugin_root(work)
            manifest = _read_manifest(root)
            _check_entry(root, manifest, check_module)
            normalise_modes(root)
            digest, size = digest_and_size(root)
            final = self.path_for(digest)
            with self._lock:
                if not final.is_dir():
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(root, final)
                self._pins[digest] += 1
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Artifact(digest=digest, directory=str(final), manifest=manifest, size_bytes=size)

    def local_copy(self, digest: str, archive_of: ArchiveSource, caps: UploadCaps) -> Path:
        """The directory of the artifact ``digest`` on this node, verified; fetched and unpacked from the
        database when this node has no good copy."""
        path = self.path_for(digest)
        if digest in self._verified and path.is_dir():
            return path
        if path.is_dir():
            if tree_digest(path) == digest:
                self._verified.add(digest)
                return path
            _log.error("artifact %s: the copy on disk does not match its digest; fetching it again", digest[:12])
            with self._lock:
                self._move_out(digest)
            self._empty_staging_of_removed()
        data = archive_of(digest)
        if data is None:
            raise ArtifactUnavailable(f"artifact {digest[:12]}: not on this node and no archive in the database")
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=self._staging))
        try:
            try:
                unpack_archive(data, work, caps)
                root = _plugin_root(work)
            except (UploadRejected, PayloadTooLarge) as exc:
                raise ArtifactUnavailable(f"artifact {digest[:12]}: its archive cannot be unpacked: {exc}") from None
            normalise_modes(root)
            if tree_digest(root) != digest:
                raise ArtifactUnavailable(f"artifact {digest[:12]}: the stored archive's files do not match its digest")
            with self._lock:
                if not path.is_dir():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(root, path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._verified.add(digest)
        return path

    def collect(self, referenced: Callable[[], set[str]]) -> int:
        """Remove every artifact no stored version references and no upload has pinned; the number removed."""
        removed = 0
        with self._lock:
            keep = referenced() | set(self._pins)
            for prefix in self.root.iterdir():
                if prefix == self._staging or not prefix.is_dir():
                    continue
                for directory in prefix.iterdir():
                    if directory.name not in keep:
                        self._move_out(directory.name)
                        removed += 1
        self._empty_staging_of_removed()
        if removed:
            _log.info("removed %d artifact(s) no plugin version references", removed)
        return removed

    def _move_out(self, digest: str) -> None:
        """Under the lock: out of place at once (a rename); the files go in ``_empty_staging_of_removed``."""
        self._verified.discard(digest)
        path = self.path_for(digest)
        if path.is_dir():
            os.rename(path, tempfile.mkdtemp(prefix="removed-", dir=self._staging) + "/artifact")

    def _empty_staging_of_removed(self) -> None:
        for path in self._staging.glob("removed-*"):
            shutil.rmtree(path, ignore_errors=True)


def tree_digest(root: Path) -> str:
    """SHA-256 over every entry under ``root`` in path order (see :func:`digest_and_size`)."""
    return digest_and_size(root)[0]


def digest_and_size(root: Path) -> tuple[str, int]:
    """SHA-256 over every entry under ``root`` in path order: its kind, relative path, size and bytes;
    and the files' total size (what max_artifact_mb counts), from the same walk.

    The host's own bytecode (``__pycache__``, written by the sandbox's first run or check; uploads
    cannot carry one) is left out, so an artifact keeps its digest once it has run. Modes are left
    out because ``normalise_modes`` has made them all alike. NULs separate the fields
    and a path cannot contain one, and each file's size precedes its bytes, so two different trees
    never feed the hash the same bytes.
    """
    digest = hashlib.sha256()
    size = 0
    # sorted by the UTF-8 bytes of the relative path: Path's own ordering changed between Python versions
    entries = sorted(
        (os.fsencode(path.relative_to(root).as_posix()), path)
        for path in root.rglob("*")
        if BYTECODE_DIR not in path.relative_to(root).parts
    )
    for name, path in entries:
        if path.is_dir():
            digest.update(b"d\0" + name + b"\0")
            continue
        data = path.read_bytes()
        size += len(data)
        digest.update(b"f\0" + name + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest(), size


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
