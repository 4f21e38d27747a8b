"""The guest runtime: an interpreter and a site dir that the sandboxed child can read.

The child must not see the host's environment (its site-packages hold the service's dependencies and
maybe secrets in config), and an unprivileged sandbox uid cannot read a pyenv build under /root. So the
host copies exactly what a guest needs, the SDK and msgspec, into a world-readable directory keyed by
their content hash, and runs them with an interpreter of the same minor version that any uid can read.
"""

from __future__ import annotations

import compileall
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

import rh_sdk
from rh_sandbox.errors import SandboxError

__all__ = [
    "GUEST_FLAGS",
    "GuestRuntime",
    "build_site",
    "default_runtime_root",
    "find_interpreter",
    "package_dir",
    "readable_by_others",
    "site_digest",
]

# How every guest interpreter starts: isolated (-I: no environment, no script dir), no site-packages
# (-S), no bytecode writes (-B), and every hash-based pyc checked against its source, so a pyc with
# an unchecked hash (PEP 552) never runs in place of the source beside it.
GUEST_FLAGS = ("-I", "-S", "-B", "--check-hash-based-pycs", "always")

_GUEST = Path(__file__).resolve().parent.parent / "guest"
# guest-side modules (rh_sandbox.guest: stdlib + SDK only), copied into the site dir under these names
_GUEST_MODULES = {
    "_rh_boot.py": _GUEST / "boot.py",
    "_rh_confine.py": _GUEST / "confine.py",
    "_rh_zygote.py": _GUEST / "zygote.py",
    "_rh_egress.py": _GUEST / "forwarder.py",
}
_lock = threading.Lock()


def readable_by_others(path: Path) -> bool:
    """True when any uid can read ``path`` (every parent searchable, the file readable)."""
    path = path.resolve()
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)
    except OSError:
        return False


def find_interpreter() -> str:
    """An interpreter of the host's minor version that an unprivileged uid can execute."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        os.environ.get("RH_GUEST_PYTHON", ""),
        os.path.realpath(sys.executable),
        os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ]
    for candidate in candidates:
        usable = candidate and os.access(candidate, os.X_OK) and readable_by_others(Path(candidate))
        if usable and _same_minor(candidate, version):
            return candidate
    raise SandboxError(
        f"no Python {version} interpreter readable by an unprivileged uid "
        f"(tried {', '.join(c for c in candidates if c)}); install python{version} or set RH_GUEST_PYTHON"
    )


def _same_minor(interpreter: str, version: str) -> bool:
    name = os.path.basename(interpreter)
    if name.endswith(version):
        return True
    # python3 -> python3.11 symlinks resolve above; otherwise trust the host's own interpreter only
    return os.path.realpath(interpreter) == os.path.realpath(sys.executable)


def default_runtime_root() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/rh-host/runtime")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "rh-host" / "runtime"


def package_dir(module: object) -> Path:
    return Path(module.__file__).resolve().parent  # type: ignore[attr-defined]


def site_digest(dirs: list[Path], extra: list[Path]) -> str:
    """Names a built site dir: the host's Python version and every file that goes into it."""
    digest = hashlib.sha256(sys.version.encode())
    for root in dirs:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root.parent)).encode())
                digest.update(path.read_bytes())
    for path in extra:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class GuestRuntime:
    """Where the sandboxed child finds Python, the SDK and the boot script."""

    interpreter: str
    site: Path  # holds rh_sdk/ and msgspec/ only
    boot: Path

    @classmethod
    def prepare(cls, root: Path | None = None, interpreter: str | None = None) -> GuestRuntime:
        """Build (once per content hash) and return the guest runtime under ``root``."""
        root = root or default_runtime_root()
        packages = [package_dir(rh_sdk), package_dir(msgspec)]
        target = root / site_digest(packages, list(_GUEST_MODULES.values()))
        build_site(target, packages, _GUEST_MODULES)
        return cls(
            interpreter=interpreter or find_interpreter(),
            site=target / "site",
            boot=target / "site" / "_rh_boot.py",
        )

    @property
    def root(self) -> Path:
        """The runtime dir (``site/`` and the compiled seccomp filter); bound read-only as ``/rh``."""
        return self.site.parent


def build_site(target: Path, packages: list[Path], modules: Mapping[str, Path], *, bytecode: bool = False) -> None:
    """Copy ``packages`` (dirs) and ``modules`` (name: file) into ``target/site``, world-readable, once:
    built in a staging dir and renamed, so a reader never sees half a site. ``bytecode``: compile
    the pyc files now, because the sandboxed uid cannot write them (the python of the same minor
    version reads them)."""
    with _lock:
        if not (target / "ready").exists():
            _build(target, packages, modules, bytecode)


def _build(target: Path, packages: list[Path], modules: Mapping[str, Path], bytecode: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o755)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        site = staging / "site"
        site.mkdir()
        for package in packages:
            shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))
        for name, source in modules.items():
            shutil.copy2(source, site / name)
        if bytecode:
            compileall.compile_dir(site, quiet=2, workers=1)
        for path in [staging, *staging.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        (staging / "ready").touch(mode=0o644)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "ready").exists():  # lost a race to another process: fine if it finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
