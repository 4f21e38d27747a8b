"""Several rh-host processes on one machine: two ``rh-host run`` loops and a ``rh-host serve`` with a
batch loop against it, side by side, counting the runs that ended in a sandbox fault.

Every ``rh-host run`` is a whole host process: it sweeps stale cgroups when its backend starts and
removes its tenant dirs when it closes, while the others start zygotes and join those dirs. Before
each process owned its cgroups (docs/isolation.md, "What each process owns"), such runs ended
``crashed: sandbox fault ... [Errno 19] No such device``. The run loops' tenant is ``default``
(``rh-host run``'s own); the service's is a tenant of its own.

    .venv/bin/python bench/bench_side_by_side.py [--runs 200] [--isolation auto]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
from rh_testserver import OPENAI, RH_HOST, Server, cleanup, public_tempdir, upload  # noqa: E402

NOOP = REPO / "bench" / "plugins" / "noop"


def tally(counts: Counter[str], faults: list[str], handlers: list[dict]) -> None:
    """Count one run (one handler): ok, a sandbox fault, or another failure."""
    for handler in handlers:
        error = handler.get("error") or ""
        if handler["status"] == "ok":
            counts["ok"] += 1
        elif "sandbox fault" in error or "No such device" in error:
            counts["sandbox fault"] += 1
            faults.append(error)
        else:
            counts["other failure"] += 1
            faults.append(f"{handler['status']}: {error}")


def run_loop(runs: int, plugin: Path, batch: Path, isolation: str, counts: Counter[str], faults: list[str]) -> None:
    for _ in range(runs):
        done = subprocess.run(
            [RH_HOST, "run", "--plugin", str(plugin), "--json", "--quiet", "--isolation", isolation, str(batch)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        try:
            tally(counts, faults, json.loads(done.stdout)["handlers"])
        except (ValueError, KeyError):
            counts["host error"] += 1
            faults.append(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")


def batch_loop(runs: int, url: str, key: str, body: bytes, counts: Counter[str], faults: list[str]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
        for i in range(runs):
            batch_id = f"side-by-side-{i}"
            response = api.post(f"/v1/batches/{batch_id}", content=body)
            if response.status_code != 202:
                counts["host error"] += 1
                faults.append(f"{batch_id}: submit {response.status_code} {response.text[:200]}")
                continue
            while (response := api.get(f"/v1/batches/{batch_id}/outcome", params={"wait": 30})).status_code == 409:
                pass
            if response.status_code != 200:
                counts["host error"] += 1
                faults.append(f"{batch_id}: outcome {response.status_code} {response.text[:200]}")
                continue
            tally(counts, faults, response.json()["handlers"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs in all, split between the three loops")
    parser.add_argument("--isolation", default="auto", choices=["auto", "basic", "strict"])
    args = parser.parse_args()

    root = public_tempdir("rh-bench-side-by-side-")
    plugin = root / "noop"
    shutil.copytree(NOOP, plugin, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [plugin, *plugin.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = Server(root / "data", workers=2, env={"RH_ISOLATION": args.isolation}).start()
    share = args.runs // 3
    loops = {"rh-host run #1": share, "rh-host run #2": share, "serve batches": args.runs - 2 * share}
    counts = {name: Counter[str]() for name in loops}
    faults: list[str] = []
    try:
        _, key = server.create_tenant("side-by-side", {"max_concurrent_batches": 2})
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
            assert upload(api, plugin).status_code == 201
        threads = [
            threading.Thread(target=run_loop, args=(n, plugin, OPENAI, args.isolation, counts[name], faults))
            for name, n in loops.items()
            if name.startswith("rh-host run")
        ]
        body = OPENAI.read_bytes()
        serve_args = (loops["serve batches"], server.url, key, body, counts["serve batches"], faults)
        threads.append(threading.Thread(target=batch_loop, args=serve_args))
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
        cleanup(root)

    total = Counter[str]()
    print(f"{args.runs} runs side by side: 2 `rh-host run` loops + `rh-host serve` with a batch loop, "
          f"--isolation {args.isolation}, {elapsed:.1f} s")  # fmt: skip
    for name, runs in loops.items():
        got = counts[name]
        total.update(got)
        other = got["other failure"] + got["host error"]
        faulted = got["sandbox fault"]
        print(f"  {name:16} {runs:4d} runs  ok {got['ok']:4d}  sandbox faults {faulted:3d}  other failures {other:3d}")
    print(f"  sandbox faults   {total['sandbox fault']:4d}")
    for fault in faults[:5]:
        print(f"    {fault[:300]}")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
