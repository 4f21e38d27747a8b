"""The guest forwarder in-process, against a real broker on a unix socket: how a refusal reaches the plugin."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from rh_sandbox.egress import EgressBroker, OperatorPolicy, parse_grants
from rh_sandbox.guest.forwarder import Forwarder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_is_reset_even_when_the_plugin_writes_late() -> None:
    """A plain close would read as a clean, empty reply to a plugin whose first bytes come after it."""
    run_dir = Path(tempfile.mkdtemp(prefix="rh-egress-fwd-"))
    port = free_port()
    grants = parse_grants([f"internal.test:{port}"])
    policy = OperatorPolicy(allowed=("*.test:*",))  # no internal address allowed: the broker refuses
    try:
        with EgressBroker(grants, policy, resolver=lambda host, p: ["10.0.0.7"]) as broker:
            setup = broker.start(run_dir)
            listen = [{"address": "127.0.0.1", "port": port, "grant": f"internal.test:{port}"}]
            forwarder = Forwarder({"socket": str(setup.socket_path), "listen": listen}).start()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    time.sleep(0.3)  # the broker's refusal reaches the forwarder first
                    with pytest.raises(ConnectionResetError):
                        conn.sendall(b"ping")
                        conn.recv(100)
            finally:
                forwarder.close()
        assert [r.outcome for r in broker.connections] == ["refused"]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
