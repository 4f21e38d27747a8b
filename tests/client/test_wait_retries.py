"""``wait`` outlives a service outage: a broken long-poll and refused connections are retried until
the deadline (the batch is stored; only the answer was lost), and not past it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from flaky_proxy import FlakyProxy
from rh_testserver import Server

from rh_host.client import AsyncClient, Client, RemoteRegistry, TransportError

pytestmark = pytest.mark.slow

LINE = {"custom_id": "c", "response": {"status_code": 200, "body": {}}, "error": None}


@pytest.fixture
def proxy(server: Server) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(server.port)
    try:
        yield flaky
    finally:
        flaky.close()


def outage_during_the_wait(proxy: FlakyProxy, after: float, lasting: float) -> threading.Thread:
    def run() -> None:
        time.sleep(after)
        proxy.outage()
        time.sleep(lasting)
        proxy.restore()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_wait_survives_an_outage(proxy: FlakyProxy, key: str) -> None:
    with Client(proxy.url, key) as rh:
        rh.submit("outage-1", [LINE], metadata={"sleep_seconds": 3})
        outage = outage_during_the_wait(proxy, after=0.5, lasting=1.5)
        outcome = rh.wait("outage-1", timeout=60)
        outage.join()
    assert outcome.success and outcome.output["echo.count"] == 1
    assert proxy.dropped >= 2  # the long-poll's connection was broken under it


def test_async_wait_survives_an_outage(proxy: FlakyProxy, key: str) -> None:
    async def main() -> bool:
        async with AsyncClient(proxy.url, key) as rh:
            await rh.submit("outage-2", [LINE], metadata={"sleep_seconds": 3})
            outage = outage_during_the_wait(proxy, after=0.5, lasting=1.5)
            outcome = await rh.wait("outage-2", timeout=60)
            outage.join()
            return outcome.success

    assert anyio.run(main)
    assert proxy.dropped >= 2


def test_wait_gives_up_at_its_deadline_when_the_service_stays_away(proxy: FlakyProxy, key: str) -> None:
    with Client(proxy.url, key) as rh:
        rh.submit("outage-3", [LINE], metadata={"sleep_seconds": 5})
        proxy.outage()
        started = time.monotonic()
        with pytest.raises(TransportError):
            rh.wait("outage-3", timeout=2)
        assert 1.5 < time.monotonic() - started < 10


def test_process_results_sends_again_when_the_service_was_away(proxy: FlakyProxy, server: Server, key: str) -> None:
    proxy.outage()  # the service is restarting when the batch completes
    threading.Timer(1.0, proxy.restore).start()
    with RemoteRegistry(proxy.url, key, timeout=60) as registry:
        assert registry.process_results("outage-4", [LINE], {"m": 1}) is True
        assert registry.last_accepted is not None and registry.last_outcome is not None
        assert registry.last_outcome.output["echo.metadata"] == {"m": 1}
