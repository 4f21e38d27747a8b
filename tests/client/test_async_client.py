"""rh_host.client.AsyncClient against a real ``rh-host serve``: the same calls, awaited, several at once."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from rh_testserver import VLLM, Server

from rh_host.client import ApiError, AsyncClient, BatchOutcome, OutcomeTimeout

pytestmark = pytest.mark.slow


def lines(prefix: str, n: int) -> Iterator[dict]:
    return ({"id": f"{prefix}{i}", "custom_id": f"{prefix}-{i}", "response": None, "error": "x"} for i in range(n))


def test_submit_wait_status_list_concurrently(server: Server, key: str) -> None:
    async def main() -> dict[str, BatchOutcome]:
        outcomes: dict[str, BatchOutcome] = {}
        async with AsyncClient(server.url, key) as rh:

            async def one(batch_id: str, n: int) -> None:
                accepted = await rh.submit(batch_id, lines(batch_id, n), metadata={"n": n})
                assert accepted.result_count == n
                outcomes[batch_id] = await rh.wait(batch_id, timeout=120)

            async with anyio.create_task_group() as tasks:
                for i in range(6):
                    tasks.start_soon(one, f"a-{i}", 100 * (i + 1))
            assert (await rh.submit("a-file", VLLM)).result_count == len(VLLM.read_bytes().splitlines())
            assert (await rh.status("a-0")).status == "done"
            assert {v.batch_id for v in await rh.list(status="done")} >= {f"a-{i}" for i in range(6)}
            assert (await rh.outcome("a-5")).output["echo.count"] == 600
        return outcomes

    outcomes = anyio.run(main)
    assert sorted(outcomes) == [f"a-{i}" for i in range(6)]
    for i in range(6):
        outcome = outcomes[f"a-{i}"]
        assert outcome.success and outcome.output["echo.count"] == 100 * (i + 1)
        assert outcome.output["echo.metadata"] == {"n": 100 * (i + 1)}


def test_errors_and_timeout(server: Server, key: str) -> None:
    async def main() -> None:
        async with AsyncClient(server.url, key) as rh:
            with pytest.raises(ApiError) as missing:
                await rh.outcome("nope")
            assert (missing.value.status_code, missing.value.code) == (404, "not_found")
            with pytest.raises(ApiError) as empty:
                await rh.submit("empty", b"")
            assert (empty.value.status_code, empty.value.code) == (400, "invalid_batch")
            await rh.submit("slow", lines("s", 1), metadata={"sleep_seconds": 3})
            with pytest.raises(OutcomeTimeout):
                await rh.wait("slow", timeout=0.5)
            assert (await rh.wait("slow", timeout=120)).success

    anyio.run(main)
