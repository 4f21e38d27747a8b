"""WASM network grants: the ``rh::http_request`` host function through the run's egress broker, against
a real HTTP server on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from wasm_helpers import wasm_backend, write_plugin

from rh_sandbox.egress import EgressSettings, OperatorPolicy
from rh_sandbox.probe import Probe
from rh_sandbox.types import Limits, RunResult, RunSpec, RunStatus
from rh_sandbox.wasm import WasmBackend

_PREFIX = '{"ran": true, "ok": true, "output": {"http": '


def _escape(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


def http_guest(request: dict) -> str:
    """Calls rh::http_request with ``request`` and replies with the host's JSON answer as output.http."""
    body = json.dumps(request).encode()
    return f"""(module
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "rh" "http_request" (func $request (param i32 i32) (result i32)))
 (import "rh" "http_response" (func $response (param i32 i32) (result i32)))
 (memory (export "memory") 2)
 (data (i32.const 1024) "{_escape(_PREFIX.encode())}")
 (data (i32.const 1536) "{_escape(b"}}")}")
 (data (i32.const 2048) "{_escape(body)}")
 (func $write (param $ptr i32) (param $len i32)
   (i32.store (i32.const 0) (local.get $ptr))
   (i32.store (i32.const 4) (local.get $len))
   (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
 (func (export "_start") (local $n i32)
   (drop (call $request (i32.const 2048) (i32.const {len(body)})))
   (local.set $n (call $response (i32.const 65536) (i32.const 60000)))
   (call $write (i32.const 1024) (i32.const {len(_PREFIX)}))
   (call $write (i32.const 65536) (local.get $n))
   (call $write (i32.const 1536) (i32.const 2))))"""


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        answer = json.dumps({"path": self.path, "got": data.decode(), "token": self.headers.get("X-Token")}).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _resolver(host: str, port: int) -> list[str]:
    addresses = {"hooks.test": ["127.0.0.1"], "rebind.test": ["10.0.0.7"]}
    if host not in addresses:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return addresses[host]


@pytest.fixture(scope="module", params=["basic", "strict"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, machine: Probe
) -> Iterator[WasmBackend]:
    policy = OperatorPolicy(allowed=("127.0.0.1:*", "*.test:*"), internal_allowed=("127.0.0.1:*",))
    egress = EgressSettings(policy=policy, resolver=_resolver)
    cache = tmp_path_factory.mktemp("wasm-cache")
    with wasm_backend(request.param, machine, cache_dir=cache, workers=1, egress=egress) as b:
        yield b


def run(backend: WasmBackend, directory: Path, request: dict, grants: tuple[str, ...]) -> RunResult:
    write_plugin(directory, http_guest(request))
    spec = RunSpec(
        name="http", runtime="wasm", plugin_dir=str(directory), entry="handler.wat", encoding="json",
        limits=Limits(wall_seconds=20), allowed_hosts=grants,
    )  # fmt: skip
    return backend.run(spec, b"{}")


def test_a_granted_request_goes_through_the_broker(backend: WasmBackend, tmp_path: Path, port: int) -> None:
    request = {"method": "POST", "url": f"http://hooks.test:{port}/hook?x=1", "headers": {"X-Token": "t1"},
               "body": "hello"}  # fmt: skip
    result = run(backend, tmp_path, request, (f"hooks.test:{port}",))
    assert result.status is RunStatus.OK, (result.error, result.logs)
    answer = result.reply.output["http"]
    assert answer["status"] == 201
    assert json.loads(answer["body"]) == {"path": "/hook?x=1", "got": "hello", "token": "t1"}
    assert [(c["grant"], c["outcome"], c["address"]) for c in result.egress] == [
        (f"hooks.test:{port}", "ok", "127.0.0.1")
    ]


def test_a_url_off_the_grants_is_refused_before_any_connection(backend: WasmBackend, tmp_path: Path, port: int) -> None:
    request = {"method": "POST", "url": f"http://127.0.0.1:{port}/hook", "body": "x"}
    result = run(backend, tmp_path, request, (f"hooks.test:{port}",))
    assert result.status is RunStatus.OK, result.error
    assert result.reply.output["http"] == {
        "error": f"127.0.0.1:{port} is not granted to this plugin (allowed_hosts: hooks.test:{port})"
    }
    assert result.egress == []


def test_a_grant_resolving_to_an_internal_address_is_refused_by_the_broker(
    backend: WasmBackend, tmp_path: Path
) -> None:
    result = run(backend, tmp_path, {"url": "http://rebind.test:5432/"}, ("rebind.test:5432",))
    assert "resolves to internal address 10.0.0.7" in result.reply.output["http"]["error"]
    assert result.egress[0]["outcome"] == "refused"


def test_without_grants_there_is_no_network(backend: WasmBackend, tmp_path: Path, port: int) -> None:
    result = run(backend, tmp_path, {"url": f"http://127.0.0.1:{port}/"}, ())
    assert result.reply.output["http"] == {"error": "no network: this plugin has no allowed_hosts"}
    assert result.egress is None


def test_a_grant_the_operator_does_not_permit_stops_the_run(backend: WasmBackend, tmp_path: Path) -> None:
    result = run(backend, tmp_path, {"url": "https://hooks.example.com/"}, ("hooks.example.com:443",))
    assert result.status is RunStatus.FAILED
    assert result.error == "network grant refused: not permitted by the operator's allow-list: hooks.example.com:443"


def test_other_host_imports_are_still_refused(backend: WasmBackend, tmp_path: Path) -> None:
    source = http_guest({"url": "http://x/"}).replace('"rh" "http_response"', '"rh" "open_socket"')
    write_plugin(tmp_path, source)
    spec = RunSpec(name="x", runtime="wasm", plugin_dir=str(tmp_path), entry="handler.wat", encoding="json")
    result = backend.run(spec, b"{}")
    assert result.status is RunStatus.PROTOCOL_ERROR
    assert "unknown import rh::open_socket" in result.error


C_GUEST = r"""
#include "rh_plugin.h"
int main(void) {
    rh_invocation inv;
    if (rh_read_invocation(&inv) != 0) return rh_reply_decode_error();
    char *answer = rh_http("{\"method\":\"POST\",\"url\":\"http://hooks.test:PORT/c\",\"body\":\"from C\"}");
    printf("{\"protocol\":1,\"ran\":true,\"ok\":true,\"output\":{\"http\":%s}}", answer ? answer : "null");
    return 0;
}
"""


def test_the_c_sdk_helper_makes_the_same_request(backend: WasmBackend, tmp_path: Path, port: int) -> None:
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang not installed (scripts/install.sh --test installs clang, lld and wasi-libc)")
    source = tmp_path / "handler.c"
    source.write_text(C_GUEST.replace("PORT", str(port)))
    sdk = Path(__file__).resolve().parents[3] / "sdk" / "c"
    build = subprocess.run(
        [clang, "--target=wasm32-wasi", "-O2", "-Wl,--strip-all", "-I", str(sdk), str(source), "-o",
         str(tmp_path / "handler.wasm")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    spec = RunSpec(
        name="c", runtime="wasm", plugin_dir=str(tmp_path), entry="handler.wasm", encoding="json",
        allowed_hosts=(f"hooks.test:{port}",),
    )  # fmt: skip
    result = backend.run(spec, json.dumps({"batch_id": "b", "handler": "c", "results": []}).encode())
    assert result.status is RunStatus.OK, (result.error, result.logs)
    answer = result.reply.output["http"]
    assert answer["status"] == 201 and json.loads(answer["body"])["got"] == "from C"
