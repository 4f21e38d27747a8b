"""The WASM guest's one way onto the network: an HTTP request through the run's egress broker.

A WASI preview 1 module has no sockets. A module granted hosts may import two host functions:

    (import "rh" "http_request"  (func (param i32 i32) (result i32)))   ;; request JSON ptr, len -> response length
    (import "rh" "http_response" (func (param i32 i32) (result i32)))   ;; buffer ptr, capacity -> bytes copied

The request is JSON ``{"method", "url", "headers", "body"}`` (body: UTF-8 text); the response, always
JSON, is ``{"status", "headers", "body"}`` or ``{"error": "..."}``. The worker never opens a TCP
connection itself: it asks the run's broker (the same one and the same checks as a Python run's
forwarder: grant listed, name resolved by the host, internal addresses refused, caps, connection log)
for a stream to the URL's ``host:port``, then speaks HTTP/1.1 (TLS for https, verified against the
real name) over it. Redirects are returned, not followed: a follow-up is a new request, checked again.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from urllib.parse import urlsplit

import wasmtime

from rh_sandbox.guest.forwarder import EgressRefused, open_stream

__all__ = ["HOST_MODULE", "NET_IMPORTS", "HttpBridge"]

HOST_MODULE = "rh"
NET_IMPORTS = frozenset({"http_request", "http_response"})
_MAX_REQUEST_BYTES = 8 * 1024 * 1024
_MAX_RESPONSE_BODY_BYTES = 8 * 1024 * 1024
_REQUEST_SECONDS = 30.0


class _BrokeredConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is a broker stream (TLS-wrapped for https)."""

    def __init__(self, host: str, port: int, stream: socket.socket, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._stream = stream

    def connect(self) -> None:
        self.sock = self._stream


class HttpBridge:
    """Per-worker state of the two host functions; ``begin``/``end`` bracket each run."""

    def __init__(self) -> None:
        self._socket_path: str | None = None
        self._grants: frozenset[str] = frozenset()
        self._deadline = 0.0
        self._pending = b""

    def define(self, linker: wasmtime.Linker) -> None:
        i32 = wasmtime.ValType.i32()
        ty = wasmtime.FuncType([i32, i32], [i32])
        linker.define_func(HOST_MODULE, "http_request", ty, self._http_request, access_caller=True)
        linker.define_func(HOST_MODULE, "http_response", ty, self._http_response, access_caller=True)

    def begin(self, socket_path: str | None, grants: list[str], deadline: float) -> None:
        self._socket_path, self._grants, self._deadline, self._pending = socket_path, frozenset(grants), deadline, b""

    def end(self) -> None:
        self.begin(None, [], 0.0)

    # ---- the host functions ---------------------------------------------------------------
    def _http_request(self, caller: wasmtime.Caller, ptr: int, length: int) -> int:
        memory = caller["memory"]
        if not isinstance(memory, wasmtime.Memory) or length < 0 or length > _MAX_REQUEST_BYTES:
            answer: dict = {"error": "bad request buffer"}
        else:
            try:
                answer = self._perform(bytes(memory.read(caller, ptr, ptr + length)))
            except EgressRefused as exc:
                answer = {"error": str(exc)}
            except (OSError, http.client.HTTPException, ValueError) as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
        self._pending = json.dumps(answer).encode()
        return len(self._pending)

    def _http_response(self, caller: wasmtime.Caller, ptr: int, capacity: int) -> int:
        memory = caller["memory"]
        if not isinstance(memory, wasmtime.Memory) or capacity < 0:
            return -1
        chunk = self._pending[:capacity]
        memory.write(caller, chunk, ptr)
        return len(chunk)

    # ---- one request ----------------------------------------------------------------------
    def _perform(self, raw: bytes) -> dict:
        request = json.loads(raw)
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        url = urlsplit(str(request.get("url", "")))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise EgressRefused(f"url must be http(s)://host[:port]/..., got {request.get('url')!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        grant = f"{url.hostname}:{port}"
        if self._socket_path is None:
            raise EgressRefused("no network: this plugin has no allowed_hosts")
        if grant not in self._grants:
            listed = ", ".join(sorted(self._grants))
            raise EgressRefused(f"{grant} is not granted to this plugin (allowed_hosts: {listed})")
        timeout = min(_REQUEST_SECONDS, max(0.1, self._deadline - time.monotonic()))
        stream = open_stream(self._socket_path, grant, timeout)
        if url.scheme == "https":
            stream = ssl.create_default_context().wrap_socket(stream, server_hostname=url.hostname)
        conn = _BrokeredConnection(url.hostname, port, stream, timeout)
        try:
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            body = request.get("body")
            headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
            conn.request(str(request.get("method", "GET")).upper(), path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read(_MAX_RESPONSE_BODY_BYTES + 1)
            if len(data) > _MAX_RESPONSE_BODY_BYTES:
                raise EgressRefused(f"response body over {_MAX_RESPONSE_BODY_BYTES} bytes")
            return {
                "status": response.status,
                "headers": dict(response.getheaders()),
                "body": data.decode("utf-8", "replace"),
            }
        finally:
            conn.close()
