"""The key rule on the server (issue 8, item 7): a key configured on the server goes only to the
endpoint it was configured for; a session naming another endpoint gets none, unless an
administrator allows it with ``c.K2Lab.allowed_key_endpoints``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.fake_server import Turn

OR_KEY = "sk-or-server-0123456789abcdef"
K2_KEY = "sk-k2-server-0123456789abcdef"


@pytest.fixture(autouse=True)
def openrouter_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", OR_KEY)


@pytest.fixture
def k2_config() -> dict[str, Any]:
    return {"base_url": "", "api_key": "", "preset": "openrouter"}


def ended(evs: list[dict[str, Any]]) -> bool:
    return bool(evs) and evs[-1]["type"] == "run.end"


@pytest.mark.parametrize("also_k2lab_key", [False, True])
async def test_a_session_naming_another_endpoint_gets_no_server_key(
    api, fake_model, monkeypatch, also_k2lab_key
):
    if also_k2lab_key:
        monkeypatch.setenv("K2LAB_API_KEY", K2_KEY)
    code, info = await api.get("info")
    assert info["settings"]["base_url"] == "https://openrouter.ai/api/v1"
    assert info["settings"]["api_key_set"] is True
    fake_model.script([Turn(content="Hi.")])
    sid = await api.new_session(settings={"base_url": fake_model.base_url, "model": "fake-k2"})
    await api.post("sessions", sid, "messages", body={"text": "hello"})
    evs = await api.wait_for(sid, ended, timeout=60)
    assert evs[-1]["stop_reason"] == "completed"
    sent = fake_model.headers[0].get("authorization", "")
    assert OR_KEY not in sent and K2_KEY not in sent


async def test_an_allowed_endpoint_gets_the_configured_key(api, fake_model, jp_serverapp):
    (ext,) = jp_serverapp.extension_manager.extension_apps["k2lab"]
    ext.k2config.allowed_key_endpoints = [fake_model.base_url]  # the fake's port is known now
    ext.k2config.api_key = K2_KEY
    fake_model.script([Turn(content="Hi.")])
    sid = await api.new_session(settings={"base_url": fake_model.base_url, "model": "fake-k2"})
    await api.post("sessions", sid, "messages", body={"text": "hello"})
    await api.wait_for(sid, ended, timeout=60)
    assert fake_model.headers[0]["authorization"] == f"Bearer {K2_KEY}"
