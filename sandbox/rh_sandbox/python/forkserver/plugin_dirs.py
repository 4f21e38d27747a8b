"""Plugin dirs as a zygote binds them, and what the host checks once per dir: readable by the
sandbox uids, bytecode written."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from rh_sandbox.python.bytecode import precompile
from rh_sandbox.python.strict import require_sandbox_readable
from rh_sandbox.types import SandboxError

__all__ = ["PluginDir", "PluginDirs", "entry_signature"]

_COMPILE_WAIT_S = 5.0  # how long a new plugin dir's first run waits for its bytecode
_MEMO_MAX = 4096  # plugin dirs remembered as checked readable, or as compiled


@dataclass(frozen=True)
class PluginDir:
    """A plugin dir as the zygote binds it: a replaced dir (new inode) needs a new bind."""

    path: str
    device: int
    inode: int

    @classmethod
    def of(cls, path: str) -> PluginDir:
        real = os.path.realpath(path)
        st = os.stat(real)
        return cls(real, st.st_dev, st.st_ino)

    def still_there(self) -> bool:
        try:
            return PluginDir.of(self.path) == self
        except OSError:
            return False


class PluginDirs:
    """The checks each plugin dir gets once: whether uid 65534 can read it (a walk that stats every
    parent, ~0.1 ms that every run of the dir would otherwise pay) and its bytecode, written on one
    thread while the dir's first zygote starts. Each memo is emptied at ``_MEMO_MAX`` dirs (a host
    that sees ever new dirs redoes a check now and then rather than growing without bound)."""

    def __init__(self, interpreter: str) -> None:
        self._interpreter = interpreter
        self._lock = threading.Lock()  # guards the two memos
        self._readable: set[PluginDir] = set()
        self._compiled: set[PluginDir] = set()  # bytecode written (or tried)
        self._compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rh-bytecode")

    def check(self, path: str) -> PluginDir:
        """The run's plugin dir (resolved and stat'ed each run: a dir replaced at the same path, or a
        re-pointed symlink, is a new one), checked readable by the sandbox uids."""
        try:
            plugin_dir = PluginDir.of(path)
        except OSError as exc:
            raise SandboxError(f"plugin dir {path!r} is not readable: {exc}") from exc
        if plugin_dir not in self._readable:
            require_sandbox_readable(plugin_dir.path)
            with self._lock:
                _remember(self._readable, plugin_dir)
        return plugin_dir

    def compile_once(self, plugin_dir: PluginDir) -> Future[int] | None:
        """Start writing the dir's bytecode, the first time only (None: done or tried before)."""
        with self._lock:
            if plugin_dir in self._compiled:
                return None
            _remember(self._compiled, plugin_dir)
        return self._compiler.submit(precompile, plugin_dir.path, self._interpreter)

    @staticmethod
    def await_compiled(compiling: Future[int] | None) -> None:
        if compiling is not None:
            with contextlib.suppress(Exception):  # not done (a big vendor dir): later runs get it
                compiling.result(timeout=_COMPILE_WAIT_S)

    def close(self) -> None:
        self._compiler.shutdown(wait=True, cancel_futures=True)


def _remember(seen: set[PluginDir], plugin_dir: PluginDir) -> None:
    if len(seen) >= _MEMO_MAX:
        seen.clear()
    seen.add(plugin_dir)


def entry_signature(plugin_dir: str, entry: str) -> tuple[int, ...] | None:
    """The stat of the plugin dir and of the entry's module file (two stats, ~10 us): what an edit
    in place changes (ctime: even a tool that restores the mtime changes it). None when the module
    is not a file there (the run's import will say why). The child checks every module it imported
    early again before it uses them (:meth:`rh_sdk.runner.Guest.run`)."""
    base = os.path.join(plugin_dir, *entry.partition(":")[0].split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        try:
            module, directory = os.stat(path), os.stat(plugin_dir)
        except OSError:
            continue
        return (directory.st_mtime_ns, directory.st_ctime_ns, module.st_ino, module.st_size, module.st_ctime_ns)
    return None
