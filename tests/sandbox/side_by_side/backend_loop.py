"""One host process of the side-by-side tests: ``runs`` times, a fresh backend does a run and closes.

Each backend sweeps stale cgroups when it starts and removes its tenant dirs when it closes, the way
``rh-host run``, ``plugin test`` and ``doctor`` each do once: two of these loops side by side are two
hosts on one machine. Prints one JSON object: the statuses counted, and every error.

    python backend_loop.py PLUGIN_DIR GROUP RUNS {forkserver,strict,basic}
"""

from __future__ import annotations

import collections
import json
import sys

from rh_sandbox.python.forkserver import ForkServerBackend
from rh_sandbox.python.process import ProcessBackend
from rh_sandbox.python.strict import StrictProcessBackend
from rh_sandbox.types import Backend, Limits, RunSpec, SandboxError
from rh_sdk.protocol import Invocation, encode_invocation

BACKENDS = {
    "forkserver": lambda: ForkServerBackend(prefork=1),
    "strict": StrictProcessBackend,
    "basic": ProcessBackend,
}


def main(plugin_dir: str, group: str, runs: int, kind: str) -> None:
    payload = encode_invocation(Invocation(batch_id="b1", handler="good:Good", config={}, results=[{"custom_id": "r"}]))
    spec = RunSpec(
        name="good", runtime="python", plugin_dir=plugin_dir, entry="good:Good", group=group,
        limits=Limits(wall_seconds=30),
    )  # fmt: skip
    statuses: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    for _ in range(runs):
        backend: Backend = BACKENDS[kind]()
        try:
            result = backend.run(spec, payload)
            statuses[result.status.value] += 1
            if result.status.value != "ok":
                errors.append(f"{result.status.value}: {result.error}")
        except (SandboxError, OSError) as exc:  # what the host stores as "crashed: sandbox fault"
            statuses["sandbox fault"] += 1
            errors.append(f"sandbox fault: {exc}")
        finally:
            backend.close()  # type: ignore[attr-defined]
    print(json.dumps({"statuses": statuses, "errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
