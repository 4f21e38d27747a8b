"""Host faults are not outcomes, and stored outcomes are served as stored.

The service runs in this process (uvicorn in a thread, real HTTP over loopback, SQLite, the real
sandbox dispatcher), so that a fault of the host can be injected into the dispatcher: the first runs
of a named plugin raise ``SandboxError`` as a cgroup race does, before anything of the plugin runs.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from rh_testserver import OPENAI, OPERATOR_TOKEN, SAMPLE_PLUGINS, cleanup, client, free_port, outcome, public_tempdir
from rh_testserver import upload as upload_plugin

import rh_host.service.service as service_module
from rh_host.service.app import create_app
from rh_host.service.service import Service
from rh_host.service.settings import ServiceSettings
from rh_sandbox import RunResult, RunSpec, SandboxError

STATS, ERRORS = SAMPLE_PLUGINS[0], SAMPLE_PLUGINS[1]  # stats_summary (priority 10), error_collector (20)


class _Check(msgspec.Struct):
    check: str | None = None


def is_upload_check(spec: RunSpec, payload: bytes) -> bool:
    """An upload's check of the handler (see rh_host.check), not a run of a batch."""
    decode = msgspec.json.decode if spec.encoding == "json" else msgspec.msgpack.decode
    return decode(payload, type=_Check).check is not None


class FaultyDispatcher:
    """The real dispatcher; the first ``faults[name]`` runs of a plugin raise SandboxError instead.
    Uploads' checks pass through, neither faulted nor counted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.faults: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.ran: Counter[str] = Counter()  # runs the real sandbox carried out (a real fault is retried too)
        self._lock = threading.Lock()

    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        if is_upload_check(spec, payload):
            return self.inner.run(spec, payload)  # type: ignore[no-any-return]
        with self._lock:
            fault = self.faults[spec.name] > 0
            if fault:
                self.faults[spec.name] -= 1
                self.injected[spec.name] += 1
        if fault:
            raise SandboxError("cannot join the run's cgroup: [Errno 19] No such device (injected)")
        result = self.inner.run(spec, payload)
        with self._lock:
            self.ran[spec.name] += 1
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class InProcessService:
    def __init__(self, url: str, service: Service, dispatcher: FaultyDispatcher) -> None:
        self.url, self.service, self.dispatcher = url, service, dispatcher

    def tenant(self, name: str) -> httpx.Client:
        with client(self.url, OPERATOR_TOKEN) as op:
            response = op.post("/v1/tenants", json={"name": name})
        assert response.status_code == 201, response.text
        return client(self.url, response.json()["api_key"])

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.service.settings.data_dir / "rh-host.db") as db:
            return db.execute(statement, args).fetchall()


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessService]:
    root = public_tempdir("rh-host-faults-")
    monkeypatch.setenv("RH_OPERATOR_TOKEN", OPERATOR_TOKEN)
    wrapped: list[FaultyDispatcher] = []
    real_make_dispatcher = service_module.make_dispatcher

    def make_faulty_dispatcher(*args: Any, **kwargs: Any) -> Any:
        wrapped.append(FaultyDispatcher(real_make_dispatcher(*args, **kwargs)))
        return wrapped[-1]

    monkeypatch.setattr(service_module, "make_dispatcher", make_faulty_dispatcher)
    service = Service(ServiceSettings(data_dir=root / "data"))
    port = free_port()
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.05)
    try:
        yield InProcessService(url, service, wrapped[0])
    finally:
        server.should_exit = True
        thread.join(30)
        cleanup(root)


def post(api: httpx.Client, batch_id: str) -> None:
    response = api.post(f"/v1/batches/{batch_id}", content=OPENAI.read_bytes())
    assert response.status_code == 202, response.text


def test_a_host_fault_is_retried_and_the_batch_then_succeeds(svc: InProcessService) -> None:
    with svc.tenant("flaky") as api:
        for directory in (STATS, ERRORS):
            assert upload_plugin(api, directory).status_code == 201
        svc.dispatcher.faults["error_collector"] = 1
        post(api, "b1")
        result = outcome(api, "b1")
        assert result["success"] is True, result
        assert {h["name"]: h["status"] for h in result["handlers"]} == {"stats_summary": "ok", "error_collector": "ok"}
        assert svc.dispatcher.injected == {"error_collector": 1}
        assert svc.dispatcher.ran == {"stats_summary": 1, "error_collector": 1}  # the ok run was replayed
        runs = api.get("/v1/batches/b1/runs").json()
        assert sorted(r["status"] for r in runs) == ["ok", "ok"]  # the fault itself was never stored
        for run in runs:  # counted without decoding the stored records
            assert run["log_count"] == len(api.get(f"/v1/batches/b1/runs/{run['plugin']}").json()["logs"]) > 0
        assert api.get("/v1/batches/b1").json()["success"] is True


def test_a_lasting_host_fault_is_stored_as_host_error_after_bounded_retries(svc: InProcessService) -> None:
    with svc.tenant("broken-host") as api:
        for directory in (STATS, ERRORS):
            assert upload_plugin(api, directory).status_code == 201
        svc.dispatcher.faults["stats_summary"] = 1000
        started = time.monotonic()
        post(api, "b2")
        result = outcome(api, "b2")
        elapsed = time.monotonic() - started
        assert result["success"] is False
        handlers = {h["name"]: h for h in result["handlers"]}
        assert handlers["stats_summary"]["status"] == "host_error"
        assert "[Errno 19] No such device" in handlers["stats_summary"]["error"]
        assert handlers["error_collector"]["status"] == "ok"
        assert svc.dispatcher.injected["stats_summary"] == 4  # one try and three retries, no more
        assert svc.dispatcher.ran["error_collector"] == 1
        assert elapsed >= 0.5 + 1 + 2  # with backoff between the tries
        assert api.get("/v1/batches/b2").json()["success"] is False


def test_plugin_files_lost_from_disk_are_fetched_from_the_database_and_verified(svc: InProcessService) -> None:
    with svc.tenant("lost-files") as api:
        stats = upload_plugin(api, STATS).json()["active"]["digest"]
        errors = upload_plugin(api, ERRORS).json()["active"]["digest"]
        shutil.rmtree(svc.service.artifacts.path_for(errors))  # lost from disk after the upload
        handler = svc.service.artifacts.path_for(stats) / "handler.py"
        handler.chmod(0o644)
        handler.write_text(handler.read_text() + "\nraise SystemExit('tampered')\n")  # changed on disk
        post(api, "b3")
        result = outcome(api, "b3")
        assert result["success"] is True, result
        assert {h["name"]: h["status"] for h in result["handlers"]} == {"stats_summary": "ok", "error_collector": "ok"}
        assert "tampered" not in handler.read_text()  # the copy that did not match its digest was replaced
        copy = svc.service.artifacts.path_for(errors)
        assert (copy / "plugin.toml").is_file()
        assert list(copy.rglob("__pycache__/*.pyc")), "the sandbox wrote no bytecode: the next step means nothing"
        svc.service.artifacts._verified.clear()  # as after a restart: the copies are verified again
        inode = copy.stat().st_ino
        post(api, "b3-again")
        assert outcome(api, "b3-again")["success"] is True
        assert copy.stat().st_ino == inode  # its bytecode did not fail the copy's verification


def test_a_plugin_whose_files_cannot_be_got_is_not_run_and_its_batch_not_marked_done(svc: InProcessService) -> None:
    with svc.tenant("no-files") as api:
        assert upload_plugin(api, STATS).status_code == 201
        digest = upload_plugin(api, ERRORS).json()["active"]["digest"]
        off = upload_plugin(api, SAMPLE_PLUGINS[2]).json()["active"]["digest"]  # its config disables it
        assert api.put("/v1/plugins/jsonl_exporter/config", json={"config": {"enabled": False}}).status_code == 200
        for lost in (digest, off):  # gone from this node's disk and from the database
            shutil.rmtree(svc.service.artifacts.path_for(lost))
            svc.sql("DELETE FROM artifact_archives WHERE digest = ?", lost)
        post(api, "b3")
        deadline = time.monotonic() + 30
        while api.get("/v1/batches/b3").json()["attempts"] < 2:  # claimed, given back, claimed again
            assert time.monotonic() < deadline
            time.sleep(0.1)
        view = api.get("/v1/batches/b3").json()
        assert view["finished_at"] is None and view["success"] is None
        assert api.get("/v1/batches/b3/outcome").status_code == 409
        assert api.get("/v1/batches/b3/runs").json() == [] and svc.dispatcher.ran["stats_summary"] == 0
        assert upload_plugin(api, ERRORS).status_code == 200  # the same files again: the archive is back
        result = outcome(api, "b3")
        assert result["success"] is True, result
        handlers = {h["name"]: h["status"] for h in result["handlers"]}
        # a disabled plugin needs no files: skipped, as it would be with them
        assert handlers == {"stats_summary": "ok", "error_collector": "ok", "jsonl_exporter": "skipped"}


def test_outcome_is_served_as_stored_and_status_never_reads_it(svc: InProcessService) -> None:
    with svc.tenant("reader") as api:
        assert upload_plugin(api, STATS).status_code == 201
        post(api, "b4")
        first = outcome(api, "b4")
        ((pk,),) = svc.sql("SELECT pk FROM batches WHERE batch_id = 'b4'")
        ((stored,),) = svc.sql("SELECT outcome FROM outcomes WHERE batch_pk = ?", pk)
        assert msgspec.json.decode(stored) == first
        # a field no BatchOutcome has: decoding and re-encoding would drop it; the stored bytes keep it
        marked = stored[:-1] + ',"stored_marker":"kept"}'
        svc.sql("UPDATE outcomes SET outcome = ? WHERE batch_pk = ?", marked, pk)
        response = api.get("/v1/batches/b4/outcome")
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
        assert response.content == marked.encode()
        # the status and the list take success from its own column: an outcome they cannot decode is no matter
        svc.sql("UPDATE outcomes SET outcome = '[1, 2]' WHERE batch_pk = ?", pk)
        status = api.get("/v1/batches/b4")
        assert status.status_code == 200 and status.json()["success"] is True
        listed = api.get("/v1/batches")
        assert listed.status_code == 200 and [b["success"] for b in listed.json()] == [True]
