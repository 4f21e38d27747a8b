"""Network grants end to end at the strict level: a real sandbox (netns with only ``lo``), the guest
forwarder started by the boot script, the run's broker on the host, echo servers on the host's loopback."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rh_sandbox.egress import EgressSettings, OperatorPolicy
from rh_sandbox.factory import make_python_backend
from rh_sandbox.probe import Probe
from rh_sandbox.python.strict import StrictProcessBackend
from rh_sandbox.types import Limits, RunResult, RunSpec, RunStatus
from rh_sdk.protocol import Invocation, encode_invocation
from tests.sandbox.conftest import copy_plugin

pytestmark = pytest.mark.usefixtures("needs_strict", "needs_cgroups")
REFUSED = ("error:PermissionError", "error:ConnectionRefusedError")


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = self.request.recv(100)
        self.request.sendall(b"echo " + data + b" from " + str(self.server.server_address[1]).encode())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def echo_server(port: int = 0) -> Iterator[int]:
    server = _Server(("127.0.0.1", port), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def low_port_echo_server() -> Iterator[int]:
    """An echo server on a free port below 1024 (granted ports like 443 need the sandbox's help)."""
    for port in range(700, 1000):
        try:
            with echo_server(port) as bound:
                yield bound
                return
        except OSError:
            continue
    pytest.fail("no free loopback port in 700-999 for the low-port test")


def fake_dns(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


@pytest.fixture(scope="module")
def net_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = Path("/tmp") / f"rh-egress-plugin-{tmp_path_factory.getbasetemp().name}"
    root.mkdir(mode=0o755)
    try:
        yield copy_plugin("net", root / "net")
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def run(backend, plugin: Path, entry: str, grants: tuple[str, ...], config: dict) -> RunResult:
    spec = RunSpec(
        name="net", runtime="python", plugin_dir=str(plugin), entry=f"netprobe:{entry}",
        limits=Limits(wall_seconds=20), allowed_hosts=grants,
    )  # fmt: skip
    payload = encode_invocation(Invocation(batch_id="b1", handler="net", config=config, results=[]))
    return backend.run(spec, payload)


def strict_backend(**dns: list[str]) -> StrictProcessBackend:
    policy = OperatorPolicy(allowed=("*.test:*", "127.0.0.1:*"), internal_allowed=("127.0.0.1:*",))
    return StrictProcessBackend(egress=EgressSettings(policy=policy, resolver=fake_dns(dns)))


def test_a_granted_name_reaches_its_server_and_nothing_else(net_plugin: Path) -> None:
    backend = strict_backend(**{"echo.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with echo_server() as port, echo_server() as other_port:
        result = run(
            backend, net_plugin, "Connect", (f"echo.test:{port}",),
            {"targets": [
                ["echo.test", port],  # granted
                ["echo.test", other_port],  # the granted name, another port
                ["other.test", other_port],  # a name the host could resolve, not granted
                ["127.0.0.1", other_port],  # a host service by loopback literal
                ["10.1.2.3", port],  # an IP literal off the sandbox, on a granted port
            ]},
        )  # fmt: skip
    assert result.status is RunStatus.OK, (result.error, result.logs)
    attempts = result.reply.output["attempts"]
    assert attempts[f"echo.test:{port}"] == f"reply:echo ping from {port}"
    # another port: Landlock (ABI 4+) refuses the connect; without it, nothing listens on the sandbox's lo
    assert attempts[f"echo.test:{other_port}"].startswith(REFUSED)
    assert attempts[f"other.test:{other_port}"].startswith("error:gaierror")  # not in the sandbox's /etc/hosts
    assert attempts[f"127.0.0.1:{other_port}"].startswith(REFUSED)  # the sandbox's own lo
    assert attempts[f"10.1.2.3:{port}"].startswith("error:OSError:Network is unreachable")
    # the forwarder's threads run under the same seccomp filter, with no capability left
    threads = result.reply.output["threads"]
    assert len(threads) >= 2 and all(state == ["2", "0000000000000000"] for state in threads.values()), threads
    assert result.egress is not None and len(result.egress) == 1
    record = result.egress[0]
    assert record["grant"] == f"echo.test:{port}" and record["outcome"] == "ok" and record["address"] == "127.0.0.1"
    assert record["bytes_sent"] == 4 and record["bytes_received"] == len(f"echo ping from {port}")


def test_a_granted_port_below_1024_is_served(net_plugin: Path) -> None:
    backend = strict_backend(**{"low.test": ["127.0.0.1"]})
    with low_port_echo_server() as port:
        result = run(backend, net_plugin, "Connect", (f"low.test:{port}",), {"targets": [["low.test", port]]})
    assert result.status is RunStatus.OK, (result.error, result.logs)
    assert result.reply.output["attempts"][f"low.test:{port}"] == f"reply:echo ping from {port}"
    assert all(state[1] == "0000000000000000" for state in result.reply.output["threads"].values())


def test_a_loopback_literal_grant_reaches_exactly_that_port(net_plugin: Path) -> None:
    backend = strict_backend()
    with echo_server() as port, echo_server() as other_port:
        targets = [["127.0.0.1", port], ["127.0.0.1", other_port]]
        result = run(backend, net_plugin, "Connect", (f"127.0.0.1:{port}",), {"targets": targets})
    assert result.status is RunStatus.OK, (result.error, result.logs)
    attempts = result.reply.output["attempts"]
    assert attempts[f"127.0.0.1:{port}"] == f"reply:echo ping from {port}"
    assert attempts[f"127.0.0.1:{other_port}"].startswith(REFUSED)


def test_a_name_resolving_to_an_internal_address_is_refused_and_logged(net_plugin: Path) -> None:
    backend = strict_backend(**{"rebind.test": ["10.0.0.7"]})
    result = run(backend, net_plugin, "Connect", ("rebind.test:5432",), {"targets": [["rebind.test", 5432]]})
    assert result.status is RunStatus.OK
    assert result.reply.output["attempts"]["rebind.test:5432"].startswith("error:")
    assert result.egress[0]["outcome"] == "refused"
    assert "resolves to internal address 10.0.0.7" in result.egress[0]["reason"]
    assert any("egress to rebind.test:5432 refused by the host" in r.message for r in result.logs)


def test_asking_the_broker_directly_for_another_host_is_refused(net_plugin: Path) -> None:
    backend = strict_backend(**{"echo.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]})
    result = run(backend, net_plugin, "AskBroker", ("echo.test:8080",), {"grant": "evil.test:8080"})
    assert result.status is RunStatus.OK, (result.error, result.logs)
    assert result.reply.output["answer"].startswith("NO evil.test:8080 is not granted to this plugin")
    assert [r["outcome"] for r in result.egress] == ["refused"]


def test_a_grant_the_operator_does_not_permit_stops_the_run_before_plugin_code(net_plugin: Path) -> None:
    backend = strict_backend()
    result = run(backend, net_plugin, "Connect", ("hooks.example.com:443",), {"targets": []})
    assert result.status is RunStatus.FAILED
    assert result.error == ("network grant refused: not permitted by the operator's allow-list: hooks.example.com:443")
    assert result.reply is None and result.logs == []


def test_the_default_settings_permit_no_grant(net_plugin: Path) -> None:
    result = run(StrictProcessBackend(), net_plugin, "Connect", ("127.0.0.1:8080",), {"targets": []})
    assert result.status is RunStatus.FAILED and "not permitted by the operator's allow-list" in result.error


def test_without_grants_no_inet_socket_at_all(net_plugin: Path) -> None:
    with echo_server() as port:
        result = run(strict_backend(), net_plugin, "Connect", (), {"targets": [["127.0.0.1", port]]})
    assert result.status is RunStatus.OK
    assert "Address family not supported" in result.reply.output["attempts"][f"127.0.0.1:{port}"]
    assert result.egress is None


def test_the_warm_backend_sends_granted_runs_to_a_cold_sandbox_with_egress(net_plugin: Path, machine: Probe) -> None:
    policy = OperatorPolicy(allowed=("127.0.0.1:*",), internal_allowed=("127.0.0.1:*",))
    backend = make_python_backend("strict", warm=True, probed=machine, egress=EgressSettings(policy=policy))
    try:
        with echo_server() as port:
            targets = {"targets": [["127.0.0.1", port]]}
            granted = run(backend, net_plugin, "Connect", (f"127.0.0.1:{port}",), targets)
            denied = run(backend, net_plugin, "Connect", (), targets)
    finally:
        backend.close()
    assert granted.reply.output["attempts"][f"127.0.0.1:{port}"] == f"reply:echo ping from {port}"
    assert granted.egress is not None and granted.egress[0]["outcome"] == "ok"
    assert denied.status is RunStatus.OK, (denied.error, denied.logs)
    assert "Address family not supported" in denied.reply.output["attempts"][f"127.0.0.1:{port}"]
