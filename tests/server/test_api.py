"""The REST routes as a client sees them: auth, XSRF, validation, sessions' life."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.server.conftest import API_KEY


async def test_extension_is_loaded_and_info_hides_the_key(api, jp_serverapp):
    assert "k2lab" in jp_serverapp.extension_manager.extension_apps
    code, info = await api.get("info")
    assert code == 200
    assert info["settings"]["model"] == "fake-k2"  # c.K2Lab.model reached the extension
    assert info["settings"]["api_key_set"] is True
    assert info["settings"]["sources"]["api_key"] == "jupyter config"
    assert info["model_label"] == "fake-k2"
    assert "browser never sees it" in info["key_help"]
    assert API_KEY not in json.dumps(info)


async def test_openapi_description_is_served_and_lists_every_rest_route(api):
    code, text = await api.get("openapi.yaml")
    assert code == 200
    spec = yaml.safe_load(text)
    paths = set(spec["paths"])
    assert {
        "/info",
        "/sessions",
        "/sessions/{id}",
        "/sessions/{id}/messages",
        "/sessions/{id}/decisions",
        "/sessions/{id}/approve-all",
        "/sessions/{id}/stop",
        "/sessions/{id}/replay",
    } <= paths


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "info"),
        ("GET", "sessions"),
        ("POST", "sessions"),
        ("GET", "sessions/abc"),
        ("POST", "sessions/abc/messages"),
        ("POST", "sessions/abc/decisions"),
        ("POST", "sessions/abc/stop"),
        ("GET", "openapi.yaml"),
    ],
)
async def test_every_route_is_403_without_auth(api, method, path):
    body = "{}" if method == "POST" else None
    code, _ = await api.call(method, *path.split("/"), body=body, headers={"Authorization": ""})
    assert code == 403


async def test_websocket_needs_auth(api, jp_ws_fetch):
    sid = await api.new_session()
    with pytest.raises(Exception) as err:
        await jp_ws_fetch("k2lab", "api", "sessions", sid, "events", headers={"Authorization": ""})
    assert "403" in str(err.value)


async def _login_cookie(jp_fetch, jp_serverapp) -> str:
    """Log in the way a browser does: the token in the URL once, a cookie afterwards."""
    token = jp_serverapp.identity_provider.token
    r = await jp_fetch("api", "status", params={"token": token}, headers={"Authorization": ""})
    cookies = [c.split(";")[0] for c in r.headers.get_list("Set-Cookie")]
    login = [c for c in cookies if not c.startswith("_xsrf=")]
    assert login, cookies
    return "; ".join(login)


async def test_cookie_authenticated_post_needs_the_xsrf_token(api, jp_fetch, jp_serverapp):
    cookie = await _login_cookie(jp_fetch, jp_serverapp)
    # a GET with the cookie alone is fine
    code, _ = await api.get("sessions", headers={"Authorization": "", "Cookie": cookie})
    assert code == 200
    # a POST with the cookie but no XSRF token is what a cross-site form would send: refused
    code, data = await api.post(
        "sessions", body={"title": "x"}, headers={"Authorization": "", "Cookie": cookie}
    )
    assert code == 403, data
    assert "XSRF" in data["message"] or "xsrf" in data["message"]
    # with the token in the cookie and the header, as JupyterLab sends it: accepted
    xsrf = "2|deadbeef|0123456789abcdef0123456789abcdef|1700000000"
    code, data = await api.post(
        "sessions",
        body={"title": "x"},
        headers={"Authorization": "", "Cookie": f"{cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf},
    )
    assert code == 201, data


async def test_create_list_get_delete(api, sessions_dir):
    code, data = await api.get("sessions")
    assert (code, data) == (200, {"sessions": []})
    sid = await api.new_session(title="Plots", settings={"approve": "never", "max_steps": 3})
    assert re.fullmatch(r"[0-9a-f]{12}", sid)
    assert (sessions_dir / f"{sid}.jsonl").exists()
    code, data = await api.get("sessions")
    (meta,) = data["sessions"]
    assert meta["id"] == sid and meta["title"] == "Plots" and meta["running"] is False
    assert meta["n_events"] == 0 and meta["settings"] == {"approve": "never", "max_steps": 3}
    code, data = await api.get("sessions", sid)
    assert code == 200 and data["events"] == [] and data["id"] == sid
    code, _ = await api.call("DELETE", "sessions", sid)
    assert code == 204
    assert not (sessions_dir / f"{sid}.jsonl").exists()
    code, data = await api.get("sessions", sid)
    assert code == 404 and sid in data["message"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ({"title": 5}, "title"),
        ({"settings": {"approve": "sometimes"}}, "settings.approve"),
        ({"settings": {"max_steps": 0}}, "settings.max_steps"),
        ({"settings": {"base_url": "ftp://x"}}, "http"),
        ({"settings": {"preset": "nope"}}, "unknown preset"),
        ({"settings": {"colour": "red"}}, "settings.colour"),
        ({"settings": {"api_key": "sk-..."}}, "never sent from the browser"),
    ],
)
async def test_bad_session_payloads_are_400_with_a_reason(api, body, reason):
    code, data = await api.post("sessions", body=body)
    assert code == 400, data
    assert reason in data["message"]
    code, data = await api.get("sessions")
    assert data["sessions"] == []  # nothing half-created


@pytest.mark.parametrize(
    ("route", "body", "reason"),
    [
        ("messages", {}, "text"),
        ("messages", {"text": "   "}, "empty"),
        ("messages", {"text": "hi", "context": {"kind": "cell"}}, "context.path"),
        ("messages", {"text": "hi", "context": {"kind": "x", "path": "a", "text": "b"}}, "kind"),
        ("decisions", {"call_id": "c1"}, "decision"),
        ("decisions", {"call_id": "c1", "decision": "maybe"}, "decision"),
        ("decisions", {"call_id": "c1", "decision": "edit"}, "arguments"),
        (
            "decisions",
            {"call_id": "c1", "decision": "edit", "arguments": "{oops"},
            "not valid JSON",
        ),
        ("decisions", {"call_id": "c1", "decision": "edit", "arguments": "[1]"}, "JSON object"),
        ("decisions", {"call_id": "c1", "decision": "approve", "arguments": "{}"}, "only goes"),
        ("decisions", {"call_id": "c1", "decision": "approve", "feedback": "no"}, "only goes"),
        ("replay", {}, "call_id"),
    ],
)
async def test_bad_session_route_payloads_are_400(api, route, body, reason):
    sid = await api.new_session()
    code, data = await api.post("sessions", sid, route, body=body)
    assert code == 400, data
    assert reason in data["message"]


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("GET", "", None),
        ("DELETE", "", None),
        ("POST", "messages", {"text": "hi"}),
        ("POST", "decisions", {"call_id": "c", "decision": "approve"}),
        ("POST", "approve-all", {}),
        ("POST", "stop", {}),
        ("POST", "replay", {"call_id": "c"}),
    ],
)
async def test_unknown_session_is_404(api, method, route, body):
    parts = ["sessions", "0123456789ab"] + ([route] if route else [])
    code, data = await api.call(method, *parts, body=body)
    assert code == 404, data
    assert "0123456789ab" in data["message"]


async def test_decisions_for_unknown_calls_and_idle_stop(api):
    sid = await api.new_session()
    code, data = await api.post("sessions", sid, "decisions",
                                body={"call_id": "nope", "decision": "approve"})  # fmt: skip
    assert code == 404 and "nope" in data["message"]
    code, data = await api.post("sessions", sid, "stop")
    assert (code, data) == (200, {"stopped": False})
    code, data = await api.post("sessions", sid, "approve-all")
    assert code == 409
