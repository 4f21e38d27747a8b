"""A connection flood against one run's broker: the host spends at most the run's caps on it (threads,
records), and a well-behaved run's broker beside it still serves its connections."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rh_sandbox.egress import EgressBroker, EgressCaps, OperatorPolicy, parse_grants
from rh_sandbox.egress.broker import EgressSetup

POLICY = OperatorPolicy(allowed=("127.0.0.1:*",), internal_allowed=("127.0.0.1:*",))


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback server that answers each connection's first bytes with ``echo <bytes>``."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.sendall(b"echo " + conn.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@contextlib.contextmanager
def broker(port: int, caps: EgressCaps | None = None) -> Iterator[tuple[EgressBroker, EgressSetup]]:
    run_dir = Path(tempfile.mkdtemp(prefix="rh-egress-flood-"))
    try:
        with EgressBroker(parse_grants([f"127.0.0.1:{port}"]), POLICY, caps=caps) as b:
            yield b, b.start(run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def ask(setup: EgressSetup, header: bytes, payload: bytes = b"ping") -> bytes:
    """One connection through the broker: the broker's answer line, then (if OK) the target's reply."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(setup.socket_path))
        with contextlib.suppress(BrokenPipeError):  # turned away at the door: the answer is waiting
            s.sendall(header)
        reader = s.makefile("rb")
        answer = reader.readline()
        if answer != b"OK\n":
            return answer
        s.sendall(payload)
        return answer + reader.read()


def connection_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "rh-egress-conn")


def test_a_flood_of_silent_connections_costs_at_most_the_run_caps(echo_port: int) -> None:
    caps = EgressCaps(max_concurrent=8, max_connections=64, connect_timeout_seconds=20)
    flood = 1500
    with broker(echo_port, caps) as (flooded, setup), broker(echo_port) as (neighbour, neighbour_setup):
        held: list[socket.socket] = []  # connections the broker admitted: they never send their header
        peak_threads = 0
        refused = 0
        pending: list[socket.socket] = []
        for i in range(flood):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(setup.socket_path))
            pending.append(s)
            if len(pending) == 50 or i == flood - 1:
                time.sleep(0.05)  # the acceptor answers those it turns away at once
                for conn in pending:
                    conn.setblocking(False)
                    try:
                        answer = conn.recv(200)
                    except BlockingIOError:
                        held.append(conn)  # admitted: its thread waits for the header
                        continue
                    assert answer.startswith(b"NO too many concurrent connections (cap 8)"), answer
                    refused += 1
                    conn.close()
                pending = []
                peak_threads = max(peak_threads, connection_threads())
                if i == 749:  # mid-flood: the neighbouring run's broker serves as usual
                    assert ask(neighbour_setup, f"RHEG1 127.0.0.1:{echo_port}\n".encode()) == b"OK\necho ping"
        assert len(held) == 8 and refused == flood - 8
        assert peak_threads <= 8 + 1  # the flooded run's 8, and the neighbour's one while it served
        for conn in held:  # the held connections end (no header): their slots come back
            conn.close()
        for _ in range(200):
            if len(flooded.connections) == 9:
                break
            time.sleep(0.02)
        # the flooding run itself gets through again once its own connections are done
        assert ask(setup, f"RHEG1 127.0.0.1:{echo_port}\n".encode()) == b"OK\necho ping"
    records = flooded.connections
    turned_away = [r for r in records if r.count > 1]
    assert [(r.reason, r.count) for r in turned_away] == [("too many concurrent connections (cap 8)", flood - 8)]
    assert len(records) == 8 + 1 + 1  # the held ones, the last good one, and the count of the rest
    assert [r.outcome for r in records if r.outcome == "ok"] == ["ok"]
    assert [r.outcome for r in neighbour.connections] == ["ok"]


def test_connections_past_the_total_cap_are_counted_not_recorded(echo_port: int) -> None:
    caps = EgressCaps(max_connections=20)
    with broker(echo_port, caps) as (b, setup):
        answers = [ask(setup, f"RHEG1 127.0.0.1:{echo_port + 1}\n".encode()) for _ in range(50)]
    not_granted = f"NO 127.0.0.1:{echo_port + 1} is not granted to this plugin".encode()
    assert all(a.startswith(not_granted) for a in answers[:20])
    assert set(answers[20:]) == {b"NO connection cap reached (20 per run)\n"}
    records = b.connections
    assert len(records) == 21
    assert records[-1].reason == "connection cap reached (20 per run)" and records[-1].count == 30
    assert all(r.count == 1 and r.outcome == "refused" for r in records[:20])
    assert b.summary()[-1]["count"] == 30
