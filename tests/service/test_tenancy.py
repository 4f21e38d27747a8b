"""Keys and tenants: every route needs a key; another tenant's ids answer 404, never 403 or data."""

from __future__ import annotations

import re

import httpx
import pytest
from rh_testserver import OPENAI, OPERATOR_TOKEN, TEST_PLUGINS, Server, client, outcome, upload

# every tenant-owned resource, as (method, path) with the owner's names filled in
OWNED = [
    ("GET", "/v1/plugins/slow_step"),
    ("POST", "/v1/plugins/slow_step/activate"),
    ("POST", "/v1/plugins/slow_step/disable"),
    ("POST", "/v1/plugins/slow_step/rollback"),
    ("GET", "/v1/plugins/slow_step/config"),
    ("PUT", "/v1/plugins/slow_step/config"),
    ("DELETE", "/v1/plugins/slow_step"),
    ("GET", "/v1/batches/owned-batch"),
    ("GET", "/v1/batches/owned-batch/outcome"),
    ("GET", "/v1/batches/owned-batch/runs"),
    ("GET", "/v1/batches/owned-batch/runs/slow_step"),
]


@pytest.fixture(scope="module")
def owner(server: Server) -> httpx.Client:
    api = server.tenant("owner")
    assert upload(api, TEST_PLUGINS / "slow_step").status_code == 201
    assert api.post("/v1/batches/owned-batch", content=OPENAI.read_bytes()).status_code == 202
    outcome(api, "owned-batch")
    return api


@pytest.mark.parametrize(("method", "path"), OWNED)
def test_another_tenants_ids_answer_404(server: Server, owner: httpx.Client, method: str, path: str) -> None:
    body = {"config": {"sleep_seconds": 0}} if method == "PUT" else None
    exists = path if method == "GET" else "/v1/plugins/slow_step"
    assert owner.get(exists).status_code == 200  # the resource is there for its owner
    with server.tenant(f"intruder-{abs(hash(path + method)) % 10**8}") as intruder:
        response = intruder.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    # and the owner's resource is untouched
    assert owner.get("/v1/plugins/slow_step").json()["enabled"] is True
    assert owner.get("/v1/batches/owned-batch").json()["status"] == "done"


def test_listings_show_only_own_resources(server: Server, owner: httpx.Client) -> None:
    with server.tenant("lister") as other:
        assert other.get("/v1/plugins").json() == []
        assert other.get("/v1/batches").json() == []
        # the same batch id and plugin name are free for another tenant
        assert other.post("/v1/batches/owned-batch", content=OPENAI.read_bytes()).json()["duplicate"] is False
        assert upload(other, TEST_PLUGINS / "slow_step").status_code == 201
    assert [p["name"] for p in owner.get("/v1/plugins").json()] == ["slow_step"]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_refuses_missing_and_invalid_keys(server: Server) -> None:
    with client(server.url, None) as anonymous:
        paths = anonymous.get("/schema/openapi.json").json()["paths"]
    checked = 0
    for path, operations in paths.items():
        if path == "/healthz":
            continue
        for method in operations:
            for key in (None, "rhk_not-a-real-key"):
                with client(server.url, key) as api:
                    response = api.request(method.upper(), _concrete(path))
                assert response.status_code == 401, (method, path, key, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
                checked += 1
    assert checked >= 30
    with client(server.url, None) as raw:
        wrong_scheme = raw.get("/v1/plugins", headers={"Authorization": f"Basic {OPERATOR_TOKEN}"})
        assert wrong_scheme.status_code == 401


def test_operator_and_tenant_keys_do_not_mix(server: Server) -> None:
    with server.tenant("mixer") as tenant:
        assert tenant.get("/v1/tenants").status_code == 403
        assert tenant.get("/metrics").status_code == 403
    with client(server.url, OPERATOR_TOKEN) as op:
        assert op.get("/v1/plugins").status_code == 403
        assert op.get("/v1/tenants").status_code == 200


def test_deleting_a_tenant_revokes_its_key(server: Server) -> None:
    tenant_id, key = server.create_tenant("doomed")
    with client(server.url, key) as api:
        assert api.get("/v1/me").json()["id"] == tenant_id
        with server.operator() as op:
            assert op.delete(f"/v1/tenants/{tenant_id}").status_code == 204
            assert op.get(f"/v1/tenants/{tenant_id}").status_code == 404
        assert api.get("/v1/me").status_code == 401


def test_tenant_names_are_unique_and_validated(server: Server) -> None:
    server.create_tenant("unique-one")
    with server.operator() as op:
        assert op.post("/v1/tenants", json={"name": "unique-one"}).status_code == 409
        assert op.post("/v1/tenants", json={"name": "../bad"}).status_code == 400
        negative = op.post("/v1/tenants", json={"name": "neg", "quotas": {"memory_mb": -1}})
        assert negative.status_code == 400 and "memory_mb" in negative.json()["error"]["message"]
        unknown = op.post("/v1/tenants", json={"name": "x", "surprise": 1})
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "bad_request"
