"""Bytecode for plugin dirs, compiled by the host so that a sandboxed run does not compile on every import.

The guest runs with ``-B`` on a read-only bind of the plugin dir: without a ``__pycache__`` every
invocation compiles the plugin's source (about 0.5 ms for a small module, much more for vendored
packages). :func:`precompile` writes *checked-hash* pycs (PEP 552) into each source dir's
``__pycache__``: the guest's importer still reads the source and compares its hash, so a stale,
missing or foreign pyc only costs a compile, never runs other code than the source.

Safety: sources are read by the host through directory descriptors without following symlinks, and
handed on stdin to the *guest* interpreter (same magic number as the sandbox), run as the sandbox
uid with rlimits and a timeout: a compiler crash or a compile bomb costs that process, never the
host. The results are written through the same kind of descriptors (temporary file, then rename), so
a plugin dir cannot redirect a write of the host's elsewhere. The sandbox binds plugin dirs
read-only, so it can never write a pyc itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import uuid
from collections.abc import Iterator

from rh_sandbox.guest.wire import HEADER, frame, split_frames
from rh_sandbox.linux.bwrap import drop_uid_prefix

__all__ = ["precompile"]

_log = logging.getLogger("rh.sandbox")
_CACHE = "__pycache__"
_MAX_FILE_BYTES = 1 << 20

# Runs in the guest interpreter as the sandbox uid: reads (name, source) frames on stdin, writes the
# cache tag, then one frame per source: its checked-hash pyc, or empty when it does not compile. Frames
# as guest/wire.py makes them (its header format is passed in: the compiler cannot import it).
_COMPILER = r"""
import importlib.util, marshal, resource, struct, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
resource.setrlimit(resource.RLIMIT_CPU, (%(cpu)d, %(cpu)d))
resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
frame, data, at, out = struct.Struct(%(header)r), sys.stdin.buffer.read(), 0, [sys.implementation.cache_tag.encode()]
while at < len(data):
    fields = []
    for _ in range(2):
        (size,) = frame.unpack_from(data, at)
        fields.append(data[at + frame.size : at + frame.size + size])
        at += frame.size + size
    try:
        code = compile(fields[1], fields[0].decode(), "exec", dont_inherit=True, optimize=0)
        pyc = importlib.util.MAGIC_NUMBER + struct.pack("<I", 0b11) + importlib.util.source_hash(fields[1])
        out.append(pyc + marshal.dumps(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        out.append(b"")
sys.stdout.buffer.write(b"".join(frame.pack(len(item)) + item for item in out))
"""


def _sources(root: str, max_files: int, max_bytes: int) -> Iterator[tuple[str, str, bytes]]:
    """(relative dir, file name, source) of every regular ``.py`` file under ``root``, no symlinks."""
    total = count = 0
    for rel, dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        dirs[:] = sorted(d for d in dirs if d != _CACHE and not d.startswith("."))
        for name in sorted(f for f in files if f.endswith(".py")):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE_BYTES:
                    continue
                source = f.read(_MAX_FILE_BYTES + 1)
            total += len(source)
            count += 1
            if count > max_files or total > max_bytes:
                return
            yield os.path.relpath(rel, root), name, source


def _compile(interpreter: str, sources: list[tuple[str, str, bytes]], timeout_s: float) -> tuple[str, list[bytes]]:
    """The guest interpreter's cache tag and one pyc (or b"") per source; ("", []) when it failed."""
    stdin = b"".join(frame(os.path.join(d, n).encode()) + frame(source) for d, n, source in sources)
    compiler = _COMPILER % {"cpu": max(1, int(timeout_s)), "header": HEADER.format}
    argv = [*drop_uid_prefix(), interpreter, "-I", "-S", "-B", "-c", compiler]
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout_s, cwd="/", env={}, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _log.info("precompiling plugin bytecode failed: %s", exc)
        return "", []
    items, whole = split_frames(proc.stdout, len(sources) + 1)
    if proc.returncode != 0 or not whole or len(items) != len(sources) + 1:
        _log.info("precompiling plugin bytecode failed: exit %s, %s", proc.returncode, proc.stderr[-300:])
        return "", []
    tag = items[0].decode("ascii", "replace")
    return (tag, items[1:]) if tag.isprintable() and "/" not in tag else ("", [])


def _write(dir_fd: int, name: str, data: bytes) -> bool:
    """Write ``__pycache__/<name>`` under ``dir_fd`` unless it already holds ``data``; never follows
    a symlink (a ``__pycache__`` that is one is refused by O_NOFOLLOW)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(_CACHE, 0o755, dir_fd=dir_fd)
    cache = os.open(_CACHE, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fchmod(cache, 0o755)  # the sandbox uid must read it whatever the host's umask
        with contextlib.suppress(OSError):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=cache)
            with os.fdopen(fd, "rb") as f:
                if f.read(len(data) + 1) == data:
                    return False
        tmp = f".{name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=cache)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)
                f.write(data)
            os.rename(tmp, name, src_dir_fd=cache, dst_dir_fd=cache)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=cache)
            raise
        return True
    finally:
        os.close(cache)


def precompile(
    plugin_dir: str,
    interpreter: str,
    *,
    timeout_s: float = 30.0,
    max_files: int = 4096,
    max_bytes: int = 64 << 20,
) -> int:
    """Compile every ``.py`` under ``plugin_dir`` (the plugin and its ``vendor/``) into checked-hash
    pycs with ``interpreter``, the guest's. Returns how many pycs were written; any failure (a read-only
    dir, a source that does not compile, limits reached) only means fewer: the guest compiles those."""
    root = os.path.realpath(plugin_dir)
    sources = list(_sources(root, max_files, max_bytes))
    if not sources:
        return 0
    tag, pycs = _compile(interpreter, sources, timeout_s)
    wanted: dict[str, dict[str, bytes]] = {}
    for (rel, name, _), pyc in zip(sources, pycs, strict=False):
        if pyc:
            wanted.setdefault(rel, {})[f"{name[:-3]}.{tag}.pyc"] = pyc
    written = 0
    try:
        for rel, _, _, dir_fd in os.fwalk(root, follow_symlinks=False):
            for name, pyc in wanted.get(os.path.relpath(rel, root), {}).items():
                written += _write(dir_fd, name, pyc)
    except OSError as exc:  # e.g. a read-only plugin store: the guest compiles instead
        _log.info("cannot write bytecode into %s: %s", root, exc)
    return written
