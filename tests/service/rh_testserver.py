"""A real ``rh-host serve`` in a subprocess on a free loopback port, and a small HTTP client for it.

Used by tests/service and tests/cli. The data dir is world-traversable (0755): strict isolation runs
plugins as an unprivileged uid, which cannot enter pytest's 0700 tmp_path.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
RH_HOST = str(Path(sys.executable).with_name("rh-host"))
SAMPLES = REPO / "sample_plugins"
SAMPLE_PLUGINS = [SAMPLES / "python" / n for n in ("stats_summary", "error_collector", "jsonl_exporter")]
OPENAI = SAMPLES / "batches" / "openai_sample.jsonl"
VLLM = SAMPLES / "batches" / "vllm_sample.jsonl"
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
OPERATOR_TOKEN = "rho_test-operator-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def public_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class Server:
    """``start()``/``kill()``/``stop()`` a service on one data dir; restartable on the same dir."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database_url: str | None = None,
        workers: int = 2,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.args = args or []  # extra ``rh-host serve`` options
        self.database_url = database_url
        self.workers = workers
        self.env = {**os.environ, "RH_OPERATOR_TOKEN": OPERATOR_TOKEN, **(env or {})}
        if not self.env["RH_OPERATOR_TOKEN"]:  # env={"RH_OPERATOR_TOKEN": ""}: the server writes its own
            del self.env["RH_OPERATOR_TOKEN"]
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        self.port = free_port()
        args = [RH_HOST, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        args += ["--workers", str(self.workers), "--log-level", "warning", *self.args]
        if self.database_url:
            args += ["--database-url", self.database_url]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=self.env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group (server and any sandboxed runs), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        self.kill()

    def operator(self) -> httpx.Client:
        return client(self.url, OPERATOR_TOKEN)

    def create_tenant(self, name: str, quotas: dict[str, Any] | None = None) -> tuple[str, str]:
        """Returns (tenant id, api key)."""
        body: dict[str, Any] = {"name": name}
        if quotas is not None:
            body["quotas"] = quotas
        with self.operator() as op:
            response = op.post("/v1/tenants", json=body)
        assert response.status_code == 201, response.text
        return response.json()["id"], response.json()["api_key"]

    def tenant(self, name: str, quotas: dict[str, Any] | None = None) -> httpx.Client:
        return client(self.url, self.create_tenant(name, quotas)[1])


def client(url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


def pack(directory: Path, extra: dict[str, bytes] | None = None, replace: dict[str, bytes] | None = None) -> bytes:
    """A tar.gz of a plugin directory (regular files), optionally with extra or replaced files."""
    buffer = io.BytesIO()
    files = {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    files.update(replace or {})
    files.update(extra or {})
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload(api: httpx.Client, directory: Path, **params: Any) -> httpx.Response:
    return api.post("/v1/plugins", content=pack(directory), params=params)


def outcome(api: httpx.Client, batch_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/v1/batches/{batch_id}/outcome", params={"wait": 10})
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 409 and response.json()["error"]["code"] == "pending", response.text
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} has no outcome after {timeout} s")


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
