"""The broker and the guest forwarder for real: a client in its own network namespace (only ``lo``),
the forwarder beside it as an unprivileged uid, the broker and the target servers on the host's loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rh_sandbox.egress import EgressBroker, OperatorPolicy, parse_grants
from rh_sandbox.egress.broker import system_resolver

HERE = Path(__file__).parent
FORWARDER = HERE.parents[2] / "sandbox/rh_sandbox/guest/forwarder.py"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
    reason="needs root, unshare and ip to build a network namespace",
)


class _Target(BaseHTTPRequestHandler):
    hits: list[tuple[int, str, str]] = []

    def do_GET(self) -> None:
        self.hits.append((self.server.server_address[1], self.path, self.headers.get("Host", "")))
        if self.path == "/redirect-name":
            self.send_response(302)
            self.send_header("Location", f"http://offlist.test:{self.server.server_address[1]}/stolen")
        elif self.path == "/redirect-ip":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.other_port}/stolen")  # type: ignore[attr-defined]
        else:
            body = f"hello from {self.server.server_address[1]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    """The granted target and another host service that must stay unreachable."""
    target = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    other = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    target.other_port = other.server_address[1]  # type: ignore[attr-defined]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (target, other)]
    for t in threads:
        t.start()
    _Target.hits = []
    yield target.server_address[1], other.server_address[1]
    for s in (target, other):
        s.shutdown()
        s.server_close()


def test_only_granted_destinations_are_reachable(servers: tuple[int, int]) -> None:
    port, other = servers
    run_dir = Path(tempfile.mkdtemp(prefix="rh-egress-"))
    os.chmod(run_dir, 0o755)  # the forwarder runs as 65534 and reaches the socket by its host path here
    fake_dns = {"target.test": ["127.0.0.1"], "internal.test": ["10.0.0.1", "169.254.169.254"]}

    def resolver(host: str, p: int) -> list[str]:
        if host == "target-alias.test":  # a real DNS answer pointing at loopback
            return system_resolver("localhost", p)
        return fake_dns[host]

    grants = parse_grants([f"target.test:{port}", f"internal.test:{port}", f"target-alias.test:{port}"])
    policy = OperatorPolicy(allowed=("*.test:*",), internal_allowed=(f"127.0.0.1:{port}",))
    try:
        with EgressBroker(grants, policy, resolver=resolver, guest_socket=str(run_dir / "egress.sock")) as broker:
            setup = broker.start(run_dir)
            # target-alias.test resolves to 127.0.0.1 too, but through the real resolver it may give ::1 first;
            # only 127.0.0.1:port is allowed, so it must connect there or be refused, never elsewhere
            script = f"""
set -e
mount --bind {setup.hosts_path} /etc/hosts
mount --bind {setup.nsswitch_path} /etc/nsswitch.conf
ip link set lo up
setpriv --reuid=65534 --regid=65534 --clear-groups {sys.executable} -I {FORWARDER} \
    '{json.dumps(setup.forwarder_config)}' > {run_dir}/fwd.out 2> {run_dir}/fwd.err &
for i in $(seq 100); do grep -q ready {run_dir}/fwd.out 2>/dev/null && break; sleep 0.05; done
setpriv --reuid=65534 --regid=65534 --clear-groups {sys.executable} -I {HERE / "netns_client.py"} \
    '{json.dumps({"port": port, "other_port": other, "socket": str(setup.socket_path)})}'
kill $! 2>/dev/null || true
"""
            proc = subprocess.run(
                # --pid --fork --kill-child: the forwarder dies with the namespace even if the script fails
                ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", script],
                capture_output=True,
                text=True,
                timeout=60,
            )
            forwarder_log = (run_dir / "fwd.err").read_text()
        records = broker.connections  # complete: close() joined every connection thread
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    assert out["granted"] == f"200 hello from {port}"
    # a forged Host header still reaches only the granted target
    assert out["host_header"] == f"200 hello from {port}"
    assert (port, "/hello", f"other.test:{other}") in _Target.hits
    # names off the list do not resolve inside; IP literals have nothing listening or no route
    assert out["ungranted_name"].startswith("error gaierror"), out["ungranted_name"]
    assert out["ip_literal_loopback"].startswith("error ConnectionRefusedError"), out["ip_literal_loopback"]
    assert out["ip_literal_private"].startswith("error OSError") and "unreachable" in out["ip_literal_private"]
    # a granted name whose DNS answer is internal: the broker refuses and the guest log says why
    assert out["internal_dns"].startswith("error"), out["internal_dns"]
    assert "internal.test resolves to internal address 10.0.0.1, 169.254.169.254" in forwarder_log
    # redirects: off-list name fails to resolve; the IP literal finds nothing listening
    assert out["redirect_off_list"].startswith("error gaierror"), out["redirect_off_list"]
    assert out["redirect_ip_literal"].startswith("error ConnectionRefusedError"), out["redirect_ip_literal"]
    # a plugin speaking to the broker socket itself gets no further
    assert out["broker_ungranted"].startswith(f"NO ungranted.test:{port} is not granted to this plugin")
    assert out["broker_garbage"].startswith("NO ") and "not a grant" in out["broker_garbage"]
    # the other host service never saw a request
    assert not [hit for hit in _Target.hits if hit[0] == other]
    by_grant: dict[str, list[str]] = {}
    for record in records:
        by_grant.setdefault(record.grant, []).append(record.outcome)
    assert by_grant[f"target.test:{port}"].count("ok") == 4  # hello, host header, two redirects' first hops
    assert by_grant[f"internal.test:{port}"] == ["refused"]
    ok = [r for r in records if r.outcome == "ok"]
    assert all(r.address == "127.0.0.1" and r.bytes_received > 0 and r.bytes_sent > 0 for r in ok)
    alias = by_grant[f"target-alias.test:{port}"]
    assert alias in (["ok"], ["refused"])  # ::1 first would be refused, never connected
    assert out["localhost_dns"] == (f"200 hello from {port}" if alias == ["ok"] else out["localhost_dns"])


def test_dns_answer_pointing_inside_is_refused_by_default() -> None:
    """With the real resolver and no operator allowance, localhost (loopback) is refused."""
    run_dir = Path(tempfile.mkdtemp(prefix="rh-egress-"))
    grants = parse_grants(["localhost:9"])
    try:
        with EgressBroker(grants, OperatorPolicy(allowed=("localhost:9",))) as broker:
            setup = broker.start(run_dir)
            import socket

            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(setup.socket_path))
                s.sendall(b"RHEG1 localhost:9\n")
                answer = s.makefile("rb").readline().decode()
        records = broker.connections  # after close(), which waits for the connection's thread to record it
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert answer.startswith("NO localhost:9: localhost resolves to internal address")
    assert records[0].outcome == "refused" and records[0].address is None


def test_byte_cap_cuts_a_connection(servers: tuple[int, int]) -> None:
    port, _ = servers
    run_dir = Path(tempfile.mkdtemp(prefix="rh-egress-"))
    from rh_sandbox.egress import EgressCaps

    caps = EgressCaps(max_bytes_per_connection=64)
    policy = OperatorPolicy(allowed=("127.0.0.1:*",), internal_allowed=("127.0.0.1:*",))
    try:
        with EgressBroker(parse_grants([f"127.0.0.1:{port}"]), policy, caps=caps) as broker:
            setup = broker.start(run_dir)
            import socket

            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(setup.socket_path))
                s.sendall(f"RHEG1 127.0.0.1:{port}\n".encode())
                assert s.makefile("rb").readline() == b"OK\n"
                s.sendall(b"GET /hello HTTP/1.0\r\nX-Pad: " + b"x" * 200 + b"\r\n\r\n")
                rest = s.recv(4096)
            for _ in range(100):
                if broker.connections:
                    break
                threading.Event().wait(0.05)
            records = broker.connections
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert rest == b""  # cut before anything came back
    assert records[0].outcome == "ok" and records[0].reason == "byte cap"
