"""Uploading stages a version unless it is asked to go live, and never re-enables a plugin its tenant
disabled: only ``activate`` does."""

from __future__ import annotations

import httpx
from rh_testserver import OPENAI, SAMPLE_PLUGINS, Server, outcome, pack

STATS = SAMPLE_PLUGINS[0]


def handler_names(api: httpx.Client, batch_id: str) -> list[str]:
    assert api.post(f"/v1/batches/{batch_id}", content=OPENAI.read_bytes()).status_code == 202
    return [h["name"] for h in outcome(api, batch_id)["handlers"]]


def test_a_new_plugin_uploaded_without_activation_is_staged(server: Server) -> None:
    with server.tenant("staging") as api:
        staged = api.post("/v1/plugins", content=pack(STATS), params={"activate": "false"})
        assert staged.status_code == 201, staged.text
        assert (staged.json()["active_seq"], staged.json()["active"]) == (None, None)
        assert [v["seq"] for v in staged.json()["versions"]] == [1]
        assert handler_names(api, "before") == []  # a staged version does not run
        live = api.post("/v1/plugins/stats_summary/activate")  # no version named: the newest staged one
        assert live.status_code == 201 and live.json()["active_seq"] == 1, live.text
        assert handler_names(api, "after") == ["stats_summary"]


def test_an_upload_does_not_re_enable_a_disabled_plugin(server: Server) -> None:
    with server.tenant("stays-disabled") as api:
        assert api.post("/v1/plugins", content=pack(STATS)).status_code == 201
        assert api.post("/v1/plugins/stats_summary/disable").status_code == 201
        second = api.post("/v1/plugins", content=pack(STATS, extra={"notes.txt": b"v2"}))
        assert second.status_code == 201, second.text
        assert (second.json()["active_seq"], second.json()["enabled"]) == (2, False)
        assert handler_names(api, "disabled") == []
        assert api.post("/v1/plugins/stats_summary/activate").json()["enabled"] is True
        assert handler_names(api, "enabled") == ["stats_summary"]
