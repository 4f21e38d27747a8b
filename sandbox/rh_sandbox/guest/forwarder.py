"""Guest side of egress: relay TCP connections on 127.0.0.N:port to the host's broker socket.

Stdlib only: this file is copied into the guest runtime and started by the boot code before any plugin
code. It enforces nothing (the plugin could talk to the broker socket itself); it only makes granted
``host:port`` pairs look like ordinary TCP servers, so database drivers and HTTP clients work unchanged.
The broker decides. A refusal is logged here (``rh.egress``), so it shows in the run's logs.

Config (JSON): ``{"socket": "/run/rh-egress/egress.sock",
"listen": [{"address": "127.0.0.2", "port": 443, "grant": "hooks.example.com:443"}, ...]}``.
Run in-process with ``start(config)`` or as a process: ``python forwarder.py '<json>'``
(prints ``ready`` once every listener is bound, stops on SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import signal
import socket
import struct
import sys
import threading
import time

__all__ = ["HEADER", "EgressRefused", "Forwarder", "open_stream", "read_line", "splice", "start"]

HEADER = b"RHEG1 "  # forwarder -> broker: b"RHEG1 host:port\n"; broker -> forwarder: b"OK\n" or b"NO reason\n"
_CHUNK = 65536
_log = logging.getLogger("rh.egress")


def splice(
    a: socket.socket,
    b: socket.socket,
    *,
    idle_seconds: float = 300.0,
    deadline: float | None = None,
    max_bytes: int | None = None,
) -> tuple[int, int, str]:
    """Copy bytes both ways until both sides are done; returns (a->b bytes, b->a bytes, how it ended).

    Ends with "closed", "idle timeout", "time cap" or "byte cap" (max_bytes counts both directions).
    """
    counts = {a: 0, b: 0}
    peer = {a: b, b: a}
    reading = [a, b]
    for s in (a, b):
        s.settimeout(idle_seconds)  # bounds a blocked sendall
    how = "closed"
    try:
        while reading:
            wait = idle_seconds
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    how = "time cap"
                    break
            ready, _, _ = select.select(reading, [], [], wait)
            if not ready:
                how = "time cap" if deadline is not None and time.monotonic() >= deadline else "idle timeout"
                break
            for src in ready:
                data = src.recv(_CHUNK)
                if not data:
                    reading.remove(src)
                    with contextlib.suppress(OSError):
                        peer[src].shutdown(socket.SHUT_WR)
                    continue
                counts[src] += len(data)
                if max_bytes is not None and counts[a] + counts[b] > max_bytes:
                    how = "byte cap"
                    reading = []
                    break
                peer[src].sendall(data)
    except OSError as exc:
        how = f"reset: {exc.strerror or exc}"
    return counts[a], counts[b], how


def read_line(sock: socket.socket, limit: int = 1024) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk or len(data) >= limit:
            break
        data += chunk
    return data


class Forwarder:
    """Listeners bound at construction (so a failure surfaces before plugin code); a thread serves them."""

    def __init__(self, config: dict) -> None:
        self.socket_path = str(config["socket"])
        self._grants: dict[socket.socket, str] = {}
        self._closed = threading.Event()
        try:
            for item in config.get("listen", []):
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    listener.bind((str(item["address"]), int(item["port"])))
                except OSError as exc:
                    listener.close()
                    hint = " (ports below 1024: the host must set ip_unprivileged_port_start=0 in this netns)"
                    hint = hint if int(item["port"]) < 1024 else ""
                    raise OSError(
                        exc.errno, f"egress: cannot listen for {item['grant']}: {exc.strerror}{hint}"
                    ) from None
                listener.listen(64)
                self._grants[listener] = str(item["grant"])
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._serve, name="rh-egress", daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        for listener in self._grants:
            listener.close()

    def _serve(self) -> None:
        listeners = list(self._grants)
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select(listeners, [], [], 0.5)
            except (OSError, ValueError):
                return  # closed
            for listener in ready:
                try:
                    client, _ = listener.accept()
                except OSError:
                    continue
                grant = self._grants[listener]
                threading.Thread(target=self._relay, args=(client, grant), name="rh-egress-conn", daemon=True).start()

    def _relay(self, client: socket.socket, grant: str) -> None:
        try:
            upstream = open_stream(self.socket_path, grant, timeout=30)
        except EgressRefused as exc:
            _log.warning(str(exc), extra={"grant": grant})
            _reset(client)
            return
        except OSError as exc:
            _log.warning(f"egress to {grant} failed: {exc}", extra={"grant": grant})
            _reset(client)
            return
        try:
            splice(client, upstream)
        except OSError as exc:
            _log.warning(f"egress to {grant} failed: {exc}", extra={"grant": grant})
        finally:
            upstream.close()
            client.close()


def _reset(client: socket.socket) -> None:
    """Close with a reset, so the plugin sees its connection fail whatever it sent, never an empty reply
    (a plain close before its first bytes arrive reads as a clean end of stream)."""
    with contextlib.suppress(OSError):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


class EgressRefused(Exception):
    """The broker said no (or nothing): the message carries its reason."""


def open_stream(socket_path: str, grant: str, timeout: float) -> socket.socket:
    """A byte stream to ``grant`` (host:port) through the broker at ``socket_path``, which decides.

    Raises :class:`EgressRefused` with the broker's reason, or OSError when the broker is unreachable.
    """
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        stream.settimeout(timeout)
        stream.connect(socket_path)
        # turned away at the door (a cap of the run), the broker closed first: its answer is waiting
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stream.sendall(HEADER + grant.encode("ascii") + b"\n")
        answer = read_line(stream)
    except BaseException:
        stream.close()
        raise
    if answer != b"OK\n":
        stream.close()
        reason = answer[3:].decode("utf-8", "replace").strip() if answer.startswith(b"NO ") else "no answer"
        raise EgressRefused(f"egress to {grant} refused by the host: {reason}")
    return stream


def start(config: dict) -> Forwarder:
    """Bind every granted listener and serve them from a daemon thread."""
    return Forwarder(config).start()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s", stream=sys.stderr)
    forwarder = start(json.loads(argv[1]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    forwarder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
