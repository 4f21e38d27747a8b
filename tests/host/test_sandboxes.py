"""The host's sandbox: one dispatcher whose Python and WASM backends give a tenant one and the same uid."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rh_host.sandboxes import make_dispatcher
from rh_sandbox.isolation import probe
from rh_sandbox.types import RunSpec, RunStatus
from rh_sandbox.uids import UidRange
from rh_sdk.protocol import Invocation, encode_invocation
from tests.sandbox.wasm.wasm_guests import replying

WHOAMI = """
import os

from rh_sdk import ResultHandler


class WhoAmI(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"uid": os.getuid()}
"""


@pytest.fixture
def plugins() -> Iterator[Path]:
    """Plugin dirs every uid can read (the Python sandbox binds them as the tenant's uid)."""
    root = Path(tempfile.mkdtemp(prefix="rh-test-", dir="/tmp"))
    os.chmod(root, 0o755)
    wat_ok = replying({"ran": True, "ok": True})
    for name, file, text in (("whoami", "whoami.py", WHOAMI), ("ok", "handler.wat", wat_ok)):
        (root / name).mkdir(mode=0o755)
        (root / name / file).write_text(text)
        (root / name / file).chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_tenants_python_and_wasm_runs_share_its_uid(plugins: Path) -> None:
    machine = probe()
    if not machine.strict_sandbox_works:
        pytest.skip(f"strict sandbox unavailable here: {machine.strict_problem}")
    payload = encode_invocation(Invocation(batch_id="b", handler="whoami:WhoAmI", config={}, results=[]))
    uid_range = UidRange(1_900_020_000, 1_900_020_999)
    with tempfile.TemporaryDirectory(prefix="rh-wasm-cache-", dir="/tmp") as cache:
        os.chmod(cache, 0o755)
        with make_dispatcher("strict", wasm_cache_dir=Path(cache), sandbox_uids=uid_range) as dispatcher:
            uids = {}
            for group in ("tenant-a", "tenant-b"):
                python = dispatcher.run(
                    RunSpec(name="who", runtime="python", plugin_dir=str(plugins / "whoami"), entry="whoami:WhoAmI",
                            group=group),
                    payload,
                )  # fmt: skip
                assert python.status is RunStatus.OK, python.error
                wasm_spec = RunSpec(
                    name="ok", runtime="wasm", plugin_dir=str(plugins / "ok"), entry="handler.wat", encoding="json",
                    group=group,
                )  # fmt: skip
                wasm = dispatcher.run(wasm_spec, b"{}")
                assert wasm.status is RunStatus.OK and wasm.isolation.startswith("strict"), wasm.error
                uids[group] = python.reply.output["uid"]
                # the worker ran as the uid that owns the tenant's compiled-module cache
                assert (Path(cache) / hashlib.sha256(group.encode()).hexdigest()[:32]).stat().st_uid == uids[group]
            assert uids["tenant-a"] != uids["tenant-b"]
            assert all(uid in uid_range for uid in uids.values())
