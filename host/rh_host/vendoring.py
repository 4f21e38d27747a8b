"""Vendor a plugin's third-party packages: wheels from the index unpacked into ``<plugin>/vendor``.

Wheels only (``--only-binary=:all:``), so no package's build code runs on the host, and built for the
guest's interpreter (its Python version and this platform), not for whatever runs the host. The result
lives inside the plugin; the guest runner adds it to ``sys.path`` (``rh_sdk._vendor.vendor_paths``)
and nothing of the host's environment is opened to the sandbox. ``rh-host plugin pack`` should call
:func:`vendor_plugin` before archiving a plugin that has a ``requirements.txt``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rh_host.errors import HostError

__all__ = ["REQUIREMENTS_NAME", "VendoringError", "vendor_plugin", "vendor_requirements"]

REQUIREMENTS_NAME = "requirements.txt"
_GUEST_OWNED = ("rh_sdk", "msgspec")  # the guest runtime provides these; a vendored copy would be shadowed


class VendoringError(HostError):
    """pip could not vendor a plugin's requirements."""


def vendor_requirements(
    plugin_dir: str | Path,
    requirements: Sequence[str],
    *,
    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}",
    timeout_seconds: float = 600.0,
) -> Path:
    """Install ``requirements`` (pip specifiers) into ``<plugin_dir>/vendor``, replacing what was there."""
    plugin = Path(plugin_dir)
    target = plugin / "vendor"
    staging = Path(tempfile.mkdtemp(prefix=".vendor-", dir=plugin))
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
        "--target", str(staging), "--only-binary=:all:", "--python-version", python_version,
        "--implementation", "cp", "--no-compile", *requirements,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise VendoringError(f"{plugin}: pip could not vendor {' '.join(requirements)}: {' | '.join(tail)}")
        for name in ("bin", *_GUEST_OWNED):
            shutil.rmtree(staging / name, ignore_errors=True)
        for path in [staging, *staging.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, 0o755 if path.is_dir() else 0o644)  # the sandbox uid must read them
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except subprocess.TimeoutExpired:
        raise VendoringError(f"{plugin}: vendoring timed out after {timeout_seconds:g} s") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def vendor_plugin(plugin_dir: str | Path, **kwargs: object) -> Path | None:
    """Vendor the plugin's ``requirements.txt`` if it has one; returns the vendor dir or None."""
    path = Path(plugin_dir) / REQUIREMENTS_NAME
    if not path.is_file():
        return None
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    requirements = [line for line in lines if line]
    for line in requirements:
        if line.startswith("-"):  # -e, -r, --index-url: an archive must not steer pip elsewhere
            raise VendoringError(f"{path}: only package specifiers are allowed, not {line!r}")
    if not requirements:
        return None
    return vendor_requirements(plugin_dir, requirements, **kwargs)  # type: ignore[arg-type]
