"""Slow, idle and too many connections against a real ``rh-host serve``: each is closed or refused within its
limit while a normal client is still served."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from rh_testserver import OPENAI, Server, cleanup, client, public_tempdir

HEADER_SECONDS = 1.0
BODY_SECONDS = 2.0
MAX_CONNECTIONS = 200
PATIENT_HEADER_SECONDS = 60.0


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    root = public_tempdir("rh-http-limits-")
    args = ["--header-timeout", str(HEADER_SECONDS), "--body-timeout", str(BODY_SECONDS)]
    srv = Server(root / "data", args=[*args, "--max-connections", str(MAX_CONNECTIONS)]).start()
    try:
        yield srv
    finally:
        srv.stop()
        cleanup(root)


@pytest.fixture(scope="module")
def patient_server() -> Iterator[Server]:
    """Head timeout far longer than opening the connections takes on a busy machine, so that only the cap can
    close an idle one in the eviction test."""
    root = public_tempdir("rh-http-cap-")
    args = ["--header-timeout", str(PATIENT_HEADER_SECONDS), "--max-connections", str(MAX_CONNECTIONS)]
    srv = Server(root / "data", args=args).start()
    try:
        yield srv
    finally:
        srv.stop()
        cleanup(root)


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    return sock


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (seconds from now)."""
    start = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(4096):
            data += chunk
    return data, time.monotonic() - start


def healthz_ok(server: Server) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_idle_connection_closed_after_header_timeout(server: Server) -> None:
    with connect(server) as sock:
        data, after = read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"request head did not arrive" in data
    assert HEADER_SECONDS * 0.8 < after < HEADER_SECONDS + 3


def test_trickled_header_closed_while_normal_client_served(server: Server) -> None:
    start = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sock.setblocking(False)
        served = 0
        closed = False
        while time.monotonic() - start < HEADER_SECONDS + 3 and not closed:
            try:
                sock.sendall(b"X-Slow: a\r\n")  # a header line every 0.2 s, never the blank line
                closed = sock.recv(4096) == b""
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            served += healthz_ok(server)
            time.sleep(0.2)
    elapsed = time.monotonic() - start
    assert closed, "the trickling client was never disconnected"
    assert elapsed < HEADER_SECONDS + 3
    assert served >= 3


@pytest.mark.parametrize("authorized", [True, False])
def test_slow_body_closed_after_body_timeout(server: Server, authorized: bool) -> None:
    key = server.create_tenant("slow-body")[1] if authorized else "nobody"
    head = f"POST /v1/batches/b1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(head.encode() + b'{"id":')
        data, after = read_until_closed(sock, 15)
    status = data.split(b"\r\n", 1)[0]
    # a tenant's batch waits for its body: 408; an unknown key is answered 401 at once, then the body times out
    assert status == (b"HTTP/1.1 408 Request Timeout" if authorized else b"HTTP/1.1 401 Unauthorized"), data
    assert data.count(b"HTTP/1.1") == 1
    assert BODY_SECONDS * 0.8 < after < BODY_SECONDS + 4


def test_keep_alive_connection_gets_a_new_head_deadline(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request's head, never finished
        data, after = read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert after < HEADER_SECONDS + 3


def test_half_open_connections_do_not_take_healthz_down(server: Server) -> None:
    sockets = []
    try:
        for i in range(MAX_CONNECTIONS - 20):
            sock = connect(server)
            if i % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # half a head
            sockets.append(sock)
        assert healthz_ok(server)  # within its 5 s timeout; bench/bench_api_abuse.py measures the latency
    finally:
        for sock in sockets:
            sock.close()


def test_at_the_cap_a_new_client_takes_the_place_of_the_longest_idle(patient_server: Server) -> None:
    server = patient_server
    sockets = []
    try:
        for _ in range(MAX_CONNECTIONS + 50):  # the first 50 are closed as the last 50 come in
            sockets.append(connect(server))
            sockets[-1].sendall(b"GET /healthz HTTP/1.1\r\n")  # half a head
        assert healthz_ok(server)
        data, after = read_until_closed(sockets[0], 10)
        assert data.startswith(b"HTTP/1.1 408 ") and b"connection cap" in data, data
        assert after < PATIENT_HEADER_SECONDS / 2  # closed by the cap, long before its header timeout
        assert server.proc is not None
        assert psutil.Process(server.proc.pid).num_fds() < MAX_CONNECTIONS + 40  # the cap holds the fds
    finally:
        for sock in sockets:
            sock.close()


def test_503_when_every_connection_is_inside_a_request(server: Server) -> None:
    sockets = []
    try:
        for _ in range(MAX_CONNECTIONS):  # heads in, bodies pending: none is waiting for a head
            sockets.append(connect(server))
            sockets[-1].sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        time.sleep(0.3)
        response = httpx.get(f"{server.url}/healthz", timeout=5)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "service_unavailable"
        assert f"maximum of {MAX_CONNECTIONS} connections" in response.json()["error"]["message"]
        deadline = time.monotonic() + BODY_SECONDS + 5
        while time.monotonic() < deadline and not healthz_ok(server):
            time.sleep(0.2)
        assert healthz_ok(server), "the stalled requests were never closed"
    finally:
        for sock in sockets:
            sock.close()


def test_the_closures_above_cost_one_log_line_a_minute(server: Server) -> None:
    """After the tests above, which closed hundreds of connections: the log says so once per report interval."""
    reports = [line for line in server.log().splitlines() if "connection(s) since the last report" in line]
    assert 1 <= len(reports) <= 2, reports


def test_serve_raises_the_open_files_soft_limit_to_the_hard_one() -> None:
    code = (
        "import resource\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "from rh_host.service.server import raise_fd_limit\n"
        "assert raise_fd_limit() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_tenant_has_at_most_four_batch_bodies_arriving_at_once(patient_server: Server) -> None:
    """Each slow body holds a spool file: a fifth from the same tenant waits for a slot (its body unread),
    another tenant is served meanwhile, and the fifth is stored once the slow ones are gone."""
    server = patient_server
    slow_key = server.create_tenant("four-bodies")[1]
    auth = f"Authorization: Bearer {slow_key}\r\n"
    head = "POST /v1/batches/b{} HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 100000\r\n\r\n"
    slow = []
    with ThreadPoolExecutor(1) as pool:
        try:
            for i in range(4):
                slow.append(connect(server))
                slow[-1].sendall(head.format(i).encode() + b'{"id": "r"}\n')
            time.sleep(0.5)  # the four are inside their handlers, receiving
            with client(server.url, slow_key) as api:
                fifth = pool.submit(api.post, "/v1/batches/fifth", content=OPENAI.read_bytes())
                with server.tenant("beside-four") as other:
                    assert other.post("/v1/batches/ok", content=OPENAI.read_bytes()).status_code == 202
                time.sleep(1)
                assert not fifth.done(), fifth.result().text  # waiting for a slot, not refused
                for sock in slow:
                    sock.close()  # RST: each handler's receive fails and gives its slot back
                assert fifth.result(timeout=30).status_code == 202
        finally:
            for sock in slow:
                sock.close()
