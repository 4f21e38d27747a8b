"""Plugin archives: packing a plugin directory (the CLI's ``pack`` and ``push``), and unpacking an
uploaded archive (zip or tar.gz) safely, or refusing it with the reason.

Everything is checked before a byte is written: the archive's size, the number of entries, every
name (no absolute paths, no ``..``, no backslashes, no name longer than the file system takes), the
layout (no entry under a name that is also a file, no file that is also a directory), every entry
type (regular files and directories only: no symlinks, hard links, devices or fifos), the unpacked
size, and the compression ratio. The
gzip stream is inflated under a byte cap, so a tar bomb costs at most the cap. Zip members are copied
in chunks and counted, so a member that lies about its size is caught too. Where tarfile has its
``data`` filter (Python 3.11.4+), it checks every tar member on top of these checks.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from rh_host.service.errors import PayloadTooLarge, UploadRejected
from rh_host.service.settings import UploadCaps

__all__ = ["normalise_modes", "pack_directory", "unpack_archive"]

_MIB = 1024 * 1024
_MAX_NAME_BYTES = 255  # one path component (NAME_MAX)
_MAX_PATH_BYTES = 1024  # a whole entry name: PATH_MAX (4096) less room for the data dir's own path
_HOST_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)  # the disk's fault, not the archive's
_SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache"}
_BYTECODE_SUFFIXES = (".pyc", ".pyo")  # never packed, refused at upload: the host compiles sources itself
_RATIO_FLOOR = _MIB  # below this much unpacked data the ratio says nothing (text compresses well)
_CHUNK = 64 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


def unpack_archive(data: bytes, dest: Path, caps: UploadCaps) -> None:
    """Unpack ``data`` into the empty directory ``dest`` or raise ``UploadRejected``/``PayloadTooLarge``."""
    if len(data) > caps.max_archive_mb * _MIB:
        raise PayloadTooLarge(f"archive is {len(data)} bytes; the limit is {caps.max_archive_mb} MiB")
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        _unpack_zip(data, dest, caps)
    elif data[:2] == b"\x1f\x8b":
        _unpack_tar_gz(data, dest, caps)
    else:
        raise UploadRejected("archive is neither a zip nor a tar.gz file")


def _check_name(name: str) -> str:
    if not name or "\x00" in name:
        raise UploadRejected("archive entry with an empty or NUL-containing name")
    if "\\" in name:
        raise UploadRejected(f"archive entry {name!r}: backslashes are not allowed in names")
    if name.startswith("/") or _DRIVE.match(name):
        raise UploadRejected(f"archive entry {name!r}: absolute paths are not allowed")
    parts = PurePosixPath(name).parts
    if name.endswith(_BYTECODE_SUFFIXES) or "__pycache__" in parts:
        # the host compiles sources itself; a shipped pyc could run in place of the source beside it
        raise UploadRejected(f"archive entry {name!r}: compiled bytecode is not accepted (upload the sources)")
    if ".." in parts:
        raise UploadRejected(f"archive entry {name!r}: '..' (path traversal) is not allowed")
    clean = "/".join(p for p in parts if p != ".")  # "" for "./", the root (``tar -C dir .`` writes it)
    if len(os.fsencode(clean)) > _MAX_PATH_BYTES:
        raise UploadRejected(f"archive entry {name[:80]!r}...: a path longer than {_MAX_PATH_BYTES} bytes")
    if any(len(os.fsencode(part)) > _MAX_NAME_BYTES for part in parts):
        raise UploadRejected(f"archive entry {name[:80]!r}...: a name longer than {_MAX_NAME_BYTES} bytes")
    return clean


def _check_layout(files: Iterable[str], directories: Iterable[str]) -> None:
    """Refuse a name that is a file and also a directory, or a directory of another entry."""
    file_set = set(files)
    for name in sorted(file_set | set(directories)):
        parent = PurePosixPath(name).parent
        while parent.parts:
            if str(parent) in file_set:
                raise UploadRejected(f"archive entry {name!r}: {str(parent)!r} is a file in the archive")
            parent = parent.parent
    if both := sorted(file_set & set(directories)):
        raise UploadRejected(f"archive entry {both[0]!r} is both a file and a directory")


def _write_error(name: str, exc: OSError) -> OSError | UploadRejected:
    """An entry the file system cannot take is the archive's fault (400); a full disk is ours."""
    if exc.errno in _HOST_FAULTS:
        return exc
    return UploadRejected(f"archive entry {name!r} cannot be unpacked: {exc.strerror or exc}")


def _check_totals(count: int, unpacked: int, packed: int, caps: UploadCaps) -> None:
    if count > caps.max_files:
        raise UploadRejected(f"archive has {count} entries; the limit is {caps.max_files}")
    if unpacked > caps.max_unpacked_mb * _MIB:
        raise UploadRejected(f"archive unpacks to more than {caps.max_unpacked_mb} MiB")
    if unpacked > _RATIO_FLOOR and unpacked / max(packed, 1) > caps.max_ratio:
        raise UploadRejected(
            f"archive compression ratio {unpacked / max(packed, 1):.0f}:1 exceeds {caps.max_ratio:.0f}:1 (zip bomb?)"
        )


def _zip_entry_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # unix attributes present
        if stat.S_ISLNK(mode):
            return "symlink"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            return "device file"
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            return "fifo or socket"
    return "directory" if info.is_dir() else "file"


def _unpack_zip(data: bytes, dest: Path, caps: UploadCaps) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise UploadRejected(f"not a readable zip archive: {exc}") from None
    with archive:
        infos = archive.infolist()
        names: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            kind = _zip_entry_kind(info)
            if kind not in ("file", "directory"):
                raise UploadRejected(f"archive entry {info.filename!r}: {kind}s are not allowed")
            name = _check_name(info.filename.rstrip("/") if info.is_dir() else info.filename)
            if not name and not info.is_dir():
                raise UploadRejected(f"archive entry {info.filename!r}: a file without a name")
            if name in names:
                raise UploadRejected(f"archive entry {info.filename!r} appears twice")
            names[name] = info
        _check_layout((n for n, i in names.items() if not i.is_dir()), (n for n, i in names.items() if i.is_dir()))
        _check_totals(len(infos), sum(i.file_size for i in infos), len(data), caps)
        budget = caps.max_unpacked_mb * _MIB
        for name, info in names.items():
            target = dest / name
            if info.is_dir():
                _make_dir(target, info.filename)
                continue
            _make_dir(target.parent, info.filename)
            try:
                source = archive.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError) as exc:
                raise UploadRejected(f"archive entry {info.filename!r} cannot be read: {exc}") from None
            budget = _copy_stream(source, target, info.filename, info.file_size, budget)


def _make_dir(path: Path, name: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(name, exc) from None


def _inflate(data: bytes, cap: int) -> bytes:
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        raw = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise UploadRejected(f"not a readable gzip stream: {exc}") from None
    if len(raw) > cap or inflater.unconsumed_tail:
        raise UploadRejected(f"archive unpacks to more than {cap // _MIB} MiB")
    return raw


def _unpack_tar_gz(data: bytes, dest: Path, caps: UploadCaps) -> None:
    # tar adds a 512-byte header (and up to 511 bytes of padding) per entry, plus a 10 KiB trailer
    cap = caps.max_unpacked_mb * _MIB + (caps.max_files + 1) * 1024 + 20 * 1024
    raw = _inflate(data, cap)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            _extract_tar(archive, dest, len(data), len(raw), caps)
    except tarfile.TarError as exc:
        raise UploadRejected(f"not a readable tar archive: {exc}") from None


def _extract_tar(archive: tarfile.TarFile, dest: Path, packed: int, inflated: int, caps: UploadCaps) -> None:
    members = archive.getmembers()
    seen: set[str] = set()
    directories: set[str] = set()
    for member in members:
        kind = _tar_entry_kind(member)
        if kind not in ("file", "directory"):
            raise UploadRejected(f"archive entry {member.name!r}: {kind}s are not allowed")
        name = _check_name(member.name)
        if member.isdir():
            directories.add(name)
            continue
        if not name:
            raise UploadRejected(f"archive entry {member.name!r}: a file without a name")
        if name in seen:
            raise UploadRejected(f"archive entry {member.name!r} appears twice")
        seen.add(name)
    _check_layout(seen, directories)
    _check_totals(len(members), sum(m.size for m in members if m.isfile()), packed, caps)
    _check_totals(len(members), inflated, packed, caps)  # the ratio again, tar headers and padding included
    data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4; Debian 12 ships 3.11.2
    budget = caps.max_unpacked_mb * _MIB
    for member in members:
        if data_filter is not None:
            try:
                data_filter(member, str(dest))
            except tarfile.FilterError as exc:
                raise UploadRejected(f"archive entry {member.name!r}: {exc}") from None
        target = dest / _check_name(member.name)
        if member.isdir():
            _make_dir(target, member.name)
            continue
        _make_dir(target.parent, member.name)
        source = archive.extractfile(member)
        if source is None:
            raise UploadRejected(f"archive entry {member.name!r} cannot be read")
        budget = _copy_stream(source, target, member.name, member.size, budget)


def _copy_stream(source: IO[bytes], target: Path, name: str, declared: int, budget: int) -> int:
    """Copy one member in chunks, counting: a member that unpacks to more than it declares is refused."""
    written = 0
    try:
        with source, open(target, "xb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > declared or written > budget:
                    raise UploadRejected(f"archive entry {name!r} unpacks to more than it declares")
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, tarfile.TarError) as exc:
        raise UploadRejected(f"archive entry {name!r} cannot be read: {exc}") from None
    except FileExistsError:
        raise UploadRejected(f"archive entry {name!r} appears twice") from None
    except OSError as exc:
        raise _write_error(name, exc) from None
    return budget - written


def _tar_entry_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "fifo"
    if member.isdir():
        return "directory"
    return "file" if member.isfile() else f"special entry (type {member.type!r})"


def normalise_modes(root: Path) -> None:
    """Directories 0755, files 0644: readable by the sandbox uid, never writable or executable by it."""
    for directory, _dirs, files in os.walk(root):
        os.chmod(directory, 0o755)
        for file in files:
            os.chmod(os.path.join(directory, file), 0o644)


def pack_directory(directory: Path) -> bytes:
    """A reproducible tar.gz of a plugin directory, as ``unpack_archive`` takes it: regular files in
    path order, mode 0644, no owners or times; caches, VCS dirs, dot files and ``.pyc`` left out."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if (
                any(part in _SKIP_DIRS or part.startswith(".") for part in relative.parts)
                or path.suffix in _BYTECODE_SUFFIXES
            ):
                continue
            if path.is_symlink():
                raise UploadRejected(f"{path}: symlinks cannot be packed (the service refuses them)")
            if not path.is_file():
                continue
            info = tarfile.TarInfo(relative.as_posix())
            info.size = path.stat().st_size
            info.mode = 0o644
            with path.open("rb") as handle:
                archive.addfile(info, handle)
    return buffer.getvalue()
