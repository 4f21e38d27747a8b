"""A plugin's own third-party packages: ``<plugin>/vendor``, put on ``sys.path`` by the guest runner.

The guest runs with ``-I -S`` (no site-packages, nothing of the host's environment), so a plugin that
needs psycopg or boto3 brings them as wheels unpacked into ``vendor/`` (the host's vendoring helper does it).
Only directories inside the plugin count: a ``vendor`` symlink pointing elsewhere is ignored, so a plugin
cannot ask the runner to import from the host. ``.pth`` files are not processed.
"""

from __future__ import annotations

import os
import stat

__all__ = ["VENDOR_DIR", "vendor_paths"]

VENDOR_DIR = "vendor"


def vendor_paths(plugin_dir: str) -> list[str]:
    """The import paths a plugin brings (``[<plugin>/vendor]`` or ``[]``), to insert after ``plugin_dir``.

    One ``lstat`` decides the usual cases (no ``vendor``, or a directory): resolving paths costs a
    fork server's child ~0.1 ms of copy-on-write faults. Only a symlink is resolved and checked."""
    vendor = os.path.join(plugin_dir, VENDOR_DIR)
    try:
        mode = os.lstat(vendor).st_mode
    except OSError:
        return []
    if stat.S_ISDIR(mode):
        return [vendor]  # a directory entry of the plugin dir: inside it by construction
    if not stat.S_ISLNK(mode):
        return []
    root = os.path.realpath(plugin_dir)
    vendor = os.path.realpath(os.path.join(root, VENDOR_DIR))
    if os.path.commonpath([root, vendor]) != root or vendor == root or not os.path.isdir(vendor):
        return []
    return [vendor]
