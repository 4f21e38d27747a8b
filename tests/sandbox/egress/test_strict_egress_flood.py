"""A granted run flooding its broker from inside a real strict sandbox: the host spends at most the
run's caps on it (threads, records), and a well-behaved granted run beside it gets through."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rh_sandbox.egress import EgressCaps, EgressSettings, OperatorPolicy
from rh_sandbox.python.strict import StrictProcessBackend
from rh_sandbox.types import Limits, RunResult, RunSpec, RunStatus
from rh_sdk.protocol import Invocation, encode_invocation
from tests.sandbox.conftest import copy_plugin
from tests.sandbox.egress.test_strict_egress import echo_server

pytestmark = pytest.mark.usefixtures("needs_strict", "needs_cgroups")
CAPS = EgressCaps(max_concurrent=8, max_connections=64)
FLOOD = 600


@pytest.fixture
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The flooding plugin (``flood/``) and the well-behaved one (``net/``), readable by the sandbox uids."""
    root = Path("/tmp") / f"rh-egress-flood-{tmp_path_factory.getbasetemp().name}"
    root.mkdir(mode=0o755)
    shutil.copytree(
        Path(__file__).parent / "flood_plugin", root / "flood", ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in [root / "flood", *(root / "flood").rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    copy_plugin("net", root / "net")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run(backend: StrictProcessBackend, plugin: Path, entry: str, grant: str, config: dict) -> RunResult:
    spec = RunSpec(
        name=plugin.name, runtime="python", plugin_dir=str(plugin), entry=entry,
        limits=Limits(wall_seconds=60), allowed_hosts=(grant,),
    )  # fmt: skip
    payload = encode_invocation(Invocation(batch_id="b1", handler=plugin.name, config=config, results=[]))
    return backend.run(spec, payload)


def test_a_flooding_run_costs_the_host_its_caps_and_its_neighbour_nothing(plugins: Path) -> None:
    policy = OperatorPolicy(allowed=("127.0.0.1:*",), internal_allowed=("127.0.0.1:*",))
    backend = StrictProcessBackend(egress=EgressSettings(policy=policy, caps=CAPS))
    peak, sampling = [0], threading.Event()

    def sample() -> None:  # the brokers run in this process: count their connection threads
        while not sampling.wait(0.005):
            peak[0] = max(peak[0], sum(1 for t in threading.enumerate() if t.name == "rh-egress-conn"))

    with echo_server() as port, ThreadPoolExecutor(2) as pool:
        grant = f"127.0.0.1:{port}"
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        flooding = pool.submit(
            run, backend, plugins / "flood", "floodprobe:Flood", grant, {"count": FLOOD, "target": ["127.0.0.1", port]}
        )
        neighbours = [
            run(backend, plugins / "net", "netprobe:Connect", grant, {"targets": [["127.0.0.1", port]]})
            for _ in range(2)
        ]
        flood = flooding.result(timeout=120)
        sampling.set()
        sampler.join()

    assert flood.status is RunStatus.OK, (flood.error, flood.logs)
    out = flood.reply.output
    assert out["held"] == CAPS.max_concurrent and out["other"] == []
    assert out["turned_away"] == FLOOD - CAPS.max_concurrent
    assert out["good"] == f"echo ping from {port}"  # the flooding run itself gets through once it stops
    assert peak[0] <= CAPS.max_concurrent + 2  # its 8, and a neighbour's connection at most at a time each
    records = flood.egress
    assert len(records) <= CAPS.max_connections + 2
    counted = [r for r in records if r["count"] > 1]
    assert [(r["reason"], r["count"]) for r in counted] == [
        (f"too many concurrent connections (cap {CAPS.max_concurrent})", FLOOD - CAPS.max_concurrent)
    ]
    for neighbour in neighbours:
        assert neighbour.status is RunStatus.OK, (neighbour.error, neighbour.logs)
        assert neighbour.reply.output["attempts"][f"127.0.0.1:{port}"] == f"reply:echo ping from {port}"
        assert [r["outcome"] for r in neighbour.egress] == ["ok"]
