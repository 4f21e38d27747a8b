"""A ResultHandler object of this process as a plugin the service can run: the file that defines its
class, a generated ``plugin.toml``, and its config split into plain values and secrets.

What ``RemoteRegistry.register(handler)`` uploads, so the guide's ``registry.register(MyHandler(config))``
works unchanged against a service. The class must live in a module file of its own (not the script
that registers it: the sandbox would run that script's code) that imports only rh_sdk, the guide's
``core.result_handlers.base`` and the standard library; anything larger is a plugin directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from rh_sdk import ResultHandler

__all__ = ["SECRET_KEY", "handler_config", "write_handler_plugin"]

SECRET_KEY = re.compile(r"key|token|secret|password|passwd|credential", re.IGNORECASE)
"""Config keys whose string values are sealed on the service as secrets, not stored as plain config."""


def _plugin_name(handler: ResultHandler) -> str:
    name = re.sub(r"[^a-z0-9_.-]", "_", handler.name().lower()).lstrip("_.-")[:63]
    if not name:
        raise ValueError(f"{type(handler).__name__}.name() {handler.name()!r} gives no usable plugin name")
    return name


def _module_file(cls: type[ResultHandler]) -> Path:
    module = sys.modules.get(cls.__module__)
    source = getattr(module, "__file__", None)
    if cls.__module__ == "__main__" or not source or not source.endswith(".py"):
        raise TypeError(
            f"{cls.__name__} is defined in {'the running script' if cls.__module__ == '__main__' else 'no .py file'}:"
            " RemoteRegistry uploads the module file that defines a handler class; move the class into a module"
            " of its own (my_handler.py) and import it, or register the path of a plugin directory"
        )
    if cls.__qualname__ != cls.__name__:
        raise TypeError(f"{cls.__qualname__}: a handler class must be defined at the top level of its module")
    return Path(source)


def handler_config(handler: ResultHandler) -> tuple[dict[str, Any], dict[str, str]]:
    """(plain config, secrets): string values under secret-looking keys are secrets."""
    plain: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for key, value in handler.config.items():
        if isinstance(value, str) and SECRET_KEY.search(key):
            secrets[key] = value
        else:
            plain[key] = value
    return plain, secrets


def write_handler_plugin(handler: ResultHandler, directory: Path) -> str:
    """Lay out ``handler``'s plugin in the empty ``directory``; returns the plugin's name."""
    cls = type(handler)
    source = _module_file(cls)
    shutil.copyfile(source, directory / source.name)
    name = _plugin_name(handler)
    secret_keys = sorted(handler_config(handler)[1])
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    manifest = "\n".join(
        [
            f"name = {json.dumps(name)}",
            f'version = "0.0.0+{digest}"',
            'runtime = "python"',
            f"entry = {json.dumps(f'{source.stem}:{cls.__name__}')}",
            f"priority = {handler.priority}",
            f"secrets = {json.dumps(secret_keys)}",
            f"description = {json.dumps(f'{cls.__name__} from {source.name}, registered by RemoteRegistry')}",
            "",
        ]
    )
    (directory / "plugin.toml").write_text(manifest, encoding="utf-8")
    return name
