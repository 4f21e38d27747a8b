"""The guest runner: decode one invocation from stdin, run the handler, write one reply to stdout.

Runs inside the sandbox, before any plugin code is imported. Everything a plugin does wrong
(an import error, ``__init__`` raising the guide's ``ValueError``, ``handle`` raising or returning
False, ``sys.exit``) becomes a :class:`~rh_sdk.protocol.Reply`; the host never sees a traceback
it has to interpret. Plugin ``print()`` output goes to stderr so it cannot corrupt the reply.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import mmap
import os
import stat
import sys
import types
from collections.abc import Iterable
from typing import Any

from rh_sdk import _handler, _registry
from rh_sdk._handler import ResultHandler, interpret_return
from rh_sdk._logs import JsonLineHandler
from rh_sdk._vendor import vendor_paths
from rh_sdk.protocol import (
    Encoding,
    GuestInvocation,
    Reply,
    encode_reply,
    invocation_decoder,
)

__all__ = ["Guest", "install_seed_alias", "load_handler_class", "main", "preload", "prepare", "run_invocation"]

_SEED_MODULES = ("core", "core.result_handlers", "core.result_handlers.base")


def install_seed_alias() -> None:
    """Make the plugin guide's import path, ``core.result_handlers.base``, resolve to rh_sdk.

    Installing rh-host installs the same alias as a module (``sdk/core/result_handlers/base.py``);
    the sandbox's site holds rh_sdk and msgspec only, so the runner builds it in ``sys.modules``.
    """
    base = types.ModuleType("core.result_handlers.base")
    base.ResultHandler = ResultHandler  # type: ignore[attr-defined]
    base.HandlerRegistry = _registry.HandlerRegistry  # type: ignore[attr-defined]
    base.get_registry = _registry.get_registry  # type: ignore[attr-defined]
    base.DEFAULT_PRIORITY = _handler.DEFAULT_PRIORITY  # type: ignore[attr-defined]
    pkg = types.ModuleType("core")
    sub = types.ModuleType("core.result_handlers")
    pkg.__path__ = []  # mark as packages so submodule imports resolve via sys.modules
    sub.__path__ = []
    pkg.result_handlers = sub  # type: ignore[attr-defined]
    sub.base = base  # type: ignore[attr-defined]
    for name, module in zip(_SEED_MODULES, (pkg, sub, base), strict=True):
        sys.modules.setdefault(name, module)


def load_handler_class(entry: str, plugin_dir: str) -> type[ResultHandler]:
    """Import ``module:Class`` from the plugin directory."""
    module_name, sep, class_name = entry.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"entry {entry!r} is not of the form module:Class")
    if plugin_dir not in sys.path:
        sys.path.insert(0, plugin_dir)
        sys.path[1:1] = [p for p in vendor_paths(plugin_dir) if p not in sys.path]
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise AttributeError(f"module {module_name!r} has no attribute {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, ResultHandler)):
        raise TypeError(f"{entry} is not a ResultHandler subclass")
    return cls


def _failed(stage: str, exc: BaseException, log: bool = True) -> Reply:
    if isinstance(exc, SystemExit):
        message = f"{stage} called sys.exit({exc.code!r})"
    else:
        message = f"{stage} raised {type(exc).__name__}: {exc}"
    if log:
        logging.getLogger("rh.runner").error(
            message, exc_info=(type(exc), exc, exc.__traceback__), extra={"stage": stage}
        )
    return Reply(ran=True, ok=False, error=message, error_type=type(exc).__name__)


def run_invocation(
    invocation: GuestInvocation, entry: str, plugin_dir: str, loaded: type[ResultHandler] | None = None
) -> Reply:
    """Construct the handler, ask ``enabled``, call ``handle``; every failure becomes a Reply.
    ``loaded``: ``entry``'s class, imported already (see :meth:`Guest.preload`)."""
    config: dict[str, Any] = invocation.config
    try:
        cls = loaded if loaded is not None else load_handler_class(entry, plugin_dir)
    except BaseException as exc:
        return _failed(f"loading {entry}", exc)
    if invocation.check == "import":
        return Reply(ran=False, ok=True, output={"checked": cls.__name__, "constructed": False})
    try:
        handler = cls(config)
    except BaseException as exc:
        return _failed(f"{cls.__name__}.__init__", exc)
    if invocation.check == "construct":
        return Reply(ran=False, ok=True, output={"checked": cls.__name__, "constructed": True})
    try:
        if not config.get("enabled", True) or not handler.enabled(invocation.metadata):
            return Reply(ran=False, ok=True)
    except BaseException as exc:
        return _failed(f"{cls.__name__}.enabled", exc)
    try:
        returned = handler.handle(invocation.batch_id, invocation.results, invocation.metadata)
    except BaseException as exc:
        # on_error logs it (the guide's default does, with the traceback); the reply carries the message
        reply = _failed(f"{cls.__name__}.handle", exc, log=False)
        try:
            handler.on_error(exc if isinstance(exc, Exception) else RuntimeError(reply.error))
        except BaseException as on_error_exc:
            logging.getLogger("rh.runner").error("on_error raised %r", on_error_exc)
        return reply
    ok, output, error = interpret_return(returned)
    return Reply(ran=True, ok=ok, output=output, error=error)


def _read_all(fd: int, size_hint: int) -> memoryview | mmap.mmap:
    """Everything until EOF: mapped when ``fd`` is a file (a fork server hands a big invocation over
    in a sealed memfd: no copy), else read into one buffer of the expected size."""
    st = os.fstat(fd)
    if size_hint and stat.S_ISREG(st.st_mode) and st.st_size == size_hint:
        mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        os.lseek(fd, 0, os.SEEK_END)  # consumed, as a pipe would be
        return mapped
    # the expected size and one byte (to see the end): a bigger buffer is fresh pages to fault in
    buf = bytearray((size_hint or 1 << 16) + 1)
    view, n = memoryview(buf), 0
    while True:
        if n == len(buf):
            view.release()  # a bytearray with a view on it cannot grow
            buf.extend(bytes(len(buf)))
            view = memoryview(buf)
        got = os.readv(fd, [view[n:]])
        if not got:
            return view[:n]
        n += got


def _modules_since(last: str | None, plugin_dir: str) -> dict[str, str]:
    """Module name -> file of the modules from ``plugin_dir`` added to ``sys.modules`` after the key
    ``last``. Walked from the newest entry back to ``last`` only: in a forked child, looking at each
    of the interpreter's hundreds of other modules is a copy-on-write fault or more (~0.3 ms)."""
    prefix = plugin_dir.rstrip("/") + "/"
    found = {}
    for name in reversed(sys.modules):
        if name == last:
            break
        path = getattr(sys.modules[name], "__file__", None)
        if isinstance(path, str) and path.startswith(prefix):
            found[name] = path
    return found


def _stamps(paths: Iterable[str]) -> list[tuple[int, ...]]:
    """The stat of each file (one stat each: ~1 us): what an edit in place changes."""
    stamps: list[tuple[int, ...]] = []
    for path in paths:
        try:
            st = os.stat(path)
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError:
            stamps.append(())
    return stamps


def _log_level(level: Any) -> int:
    try:
        return _handler.log_level(level)
    except ValueError:
        return logging.INFO  # the handler's __init__ reports the bad value in its reply


def _encode(reply: Reply, encoding: Encoding) -> bytes:
    """The reply's bytes; output the protocol cannot carry (a set, an object) fails the run, clearly."""
    try:
        return encode_reply(reply, encoding)
    except (TypeError, ValueError, OverflowError) as exc:
        message = f"handle() returned output that cannot be encoded as {encoding}: {exc}"
        logging.getLogger("rh.runner").error(message)
        return encode_reply(Reply(ran=True, ok=False, error=message, error_type="EncodeError"), encoding)


class Guest:
    """One invocation's runner, in two steps so that a fork server's waiting child can do the first
    before its request exists: :func:`prepare` (seed alias, log stream, logging handler), then
    :meth:`attach` to the run's pipes and :meth:`run`."""

    def __init__(self) -> None:
        install_seed_alias()
        # Log records go to a descriptor of their own: a plugin closing fd 2 or sys.stderr keeps its logs.
        self.log_fd = os.dup(2)
        self.log = os.fdopen(self.log_fd, "wb", buffering=0)
        self.handler = JsonLineHandler(self.log)
        logging.getLogger().handlers[:] = [self.handler]
        self.reply_fd = -1
        self.kept: object = None
        self.decoders = {encoding: _decoder(encoding) for encoding in ("msgpack", "json")}
        self.preloaded: tuple[str, str, type[ResultHandler]] | None = None
        self.preload_output = -1  # what the plugin printed and logged while it was imported early
        self.preload_modules: dict[str, str] = {}  # the plugin's modules it loaded: name -> file
        self.preload_stamps: list[tuple[int, ...]] = []  # the stat of those files then

    def preload(self, entry: str, plugin_dir: str, scratch: str) -> bool:
        """Import the plugin before the request exists (a fork server's child armed for one plugin).

        What the import prints or logs goes to an unnamed file in ``scratch`` (bounded by its size)
        and reaches the run's logs at :meth:`attach`, where it would have gone had the import
        happened during the run. False when the import raised: such a child is of no use (the caller
        exits, and the host stops arming children for that plugin, whose runs import it themselves
        and report the error). The caller has confined this process already: this is plugin code."""
        capture = os.open(scratch, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        sys.stderr.flush()
        for target in (1, 2, self.log_fd):
            os.dup2(capture, target, inheritable=target != self.log_fd)
        sys.stdout = sys.stderr
        logging.getLogger().setLevel(logging.INFO)  # a run's default level (its config is not known yet)
        last = next(reversed(sys.modules), None)
        try:
            loaded = load_handler_class(entry, plugin_dir)
        except BaseException:
            return False
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        self.preloaded = (entry, plugin_dir, loaded)
        self.preload_output = capture
        self.preload_modules = _modules_since(last, plugin_dir)
        self.preload_stamps = _stamps(self.preload_modules.values())
        return True

    def _take_preloaded(self, entry: str, plugin_dir: str) -> type[ResultHandler] | None:
        """What :meth:`preload` imported for this run, unless a file it loaded changed since (an edit
        in place): then the plugin's modules are dropped and the run imports the current code."""
        if self.preloaded is None or self.preloaded[:2] != (entry, plugin_dir):
            return None
        if _stamps(self.preload_modules.values()) == self.preload_stamps:
            return self.preloaded[2]
        for name in self.preload_modules:
            sys.modules.pop(name, None)
        sys.path_importer_cache.clear()
        importlib.invalidate_caches()
        return None

    def attach_inherited(self) -> None:
        """Keep the inherited stdout for the reply; point fd 1 at stderr so stray prints land in the logs."""
        self.reply_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def attach(self, stdin: int, stdout: int, stderr: int) -> None:
        """Take the run's pipes: ``stdin`` as fd 0, ``stderr`` as fds 1 and 2 and the log descriptor,
        ``stdout`` for the reply only. The three given descriptors are consumed."""
        sys.stderr.flush()
        for source, target in ((stdin, 0), (stderr, 1), (stderr, 2), (stderr, self.log_fd)):
            if source != target:
                os.dup2(source, target)
        for fd in {stdin, stderr} - {0, 1, 2, self.log_fd}:
            os.close(fd)
        self.reply_fd = stdout
        sys.stdout = sys.stderr
        if self.preload_output >= 0:
            capture, self.preload_output = self.preload_output, -1
            with contextlib.suppress(OSError):  # the host reads as it goes and caps it at max_log_kb
                size = os.lseek(capture, 0, os.SEEK_END)
                offset = 0
                while offset < size:
                    sent = os.sendfile(2, capture, offset, size - offset)
                    if not sent:
                        break
                    offset += sent
            os.close(capture)

    def run(self, entry: str, plugin_dir: str, encoding: Encoding = "msgpack", size_hint: int = 0) -> int:
        """Read the invocation from fd 0 (``size_hint``: its length, when known), run it, write exactly
        one reply. Returns the exit status."""
        data = _read_all(0, size_hint)
        root = logging.getLogger()
        root.handlers[:] = [self.handler]
        invocation: GuestInvocation | None = None
        try:
            invocation = self.decoders[encoding].decode(data)
        except Exception as exc:
            _set_level(root, logging.INFO)
            reply = Reply(ran=False, ok=False, error=f"undecodable invocation: {exc}", error_type="DecodeError")
        else:
            _set_level(root, _log_level(invocation.config.get("log_level", "INFO")))
            reply = run_invocation(invocation, entry, plugin_dir, self._take_preloaded(entry, plugin_dir))
        payload = _encode(reply, encoding)
        # Kept, not freed on return: freeing a big batch's objects takes ~0.5 ms that the host would
        # wait for before it sees the end, and the process exits right after anyway.
        self.kept = (data, invocation)
        with os.fdopen(self.reply_fd, "wb", buffering=0) as out:
            self.reply_fd = -1
            view = memoryview(payload)
            while view:
                view = view[out.write(view) :]
        return 0

    def close(self) -> None:
        """Close the run's pipes, so the host sees the end before this process's exit is torn down."""
        with contextlib.suppress(OSError, ValueError):  # the plugin may have closed or broken it
            sys.stderr.flush()
        if self.reply_fd >= 0:
            os.close(self.reply_fd)
            self.reply_fd = -1
        self.log.close()
        for fd in (0, 1, 2):
            with contextlib.suppress(OSError):
                os.close(fd)


def _set_level(logger: logging.Logger, level: int) -> None:
    """``setLevel`` only for a change: it clears the cache of every logger in the process, and in a
    forked child each of those writes is a copy-on-write fault (~0.05 ms a run for nothing)."""
    if logger.level != level:
        logger.setLevel(level)


@functools.cache
def _decoder(encoding: Encoding) -> Any:
    """One decoder per encoding per process (a fork server builds them before forking)."""
    return invocation_decoder(encoding)


def preload() -> None:
    """Build once what every run needs, so that a fork server's children inherit it: the decoders."""
    for encoding in ("msgpack", "json"):
        _decoder(encoding)  # type: ignore[arg-type]


def prepare() -> Guest:
    """The runner's set-up that needs no invocation: see :class:`Guest`."""
    return Guest()


def main(entry: str, plugin_dir: str, encoding: Encoding = "msgpack") -> int:
    """Entry point inside the sandbox. Returns the process exit status (0 when a reply was written)."""
    guest = prepare()
    guest.attach_inherited()
    return guest.run(entry, plugin_dir, encoding)
