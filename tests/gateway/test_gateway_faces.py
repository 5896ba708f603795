"""Every face reaches the gateway through Settings: `k2lab run --gateway-url`, the environment
(%k2 and the panel read it through resolve_settings), jupyter_server's GatewayClient.url."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from k2lab.config import K2Lab, resolve_settings
from k2lab.runtime import open_sandbox

from .conftest import SECRET

pytestmark = pytest.mark.slow
PI_DEMO = "demo: estimate pi with a Monte Carlo simulation and check it against math.pi"


def test_settings_from_env_and_token_rules() -> None:
    env = {"JUPYTER_GATEWAY_URL": "http://gw:8888", "JUPYTER_GATEWAY_AUTH_TOKEN": "gw-secret-9"}
    s = resolve_settings(None, environ=env)
    assert (s.gateway_url, s.gateway_token) == ("http://gw:8888", "gw-secret-9")
    pub = s.public()
    assert "gateway_token" not in pub and pub["gateway_token_set"] is True
    assert "gw-secret-9" not in repr(s) and "gw-secret-9" not in json.dumps(pub)
    # a cell naming another gateway does not get the configured gateway's token
    s = resolve_settings({"gateway_url": "http://evil:1"}, environ=env)
    assert s.gateway_url == "http://evil:1" and s.gateway_token == ""
    # ... the configured one (or its own token) is fine; the CLI's own command line is trusted
    s = resolve_settings({"gateway_url": "http://gw:8888/", "model": "m"}, environ=env)
    assert s.gateway_token == "gw-secret-9"
    s = resolve_settings({"gateway_url": "http://x:1"}, environ=env, options_are_the_owners=True)
    assert s.gateway_token == "gw-secret-9"
    cfg = K2Lab(gateway_url="http://c:2", gateway_token="ct")
    s = resolve_settings(None, config=cfg, environ={})
    assert (s.gateway_url, s.gateway_token) == ("http://c:2", "ct")


async def test_runtime_open_sandbox_goes_to_the_gateway(gateway: tuple[str, str]) -> None:
    url, token = gateway
    s = resolve_settings(
        None, environ={"JUPYTER_GATEWAY_URL": url, "JUPYTER_GATEWAY_AUTH_TOKEN": token}
    )
    sb = await open_sandbox(s)
    try:
        assert sb.isolation == "remote"
        r = await sb.execute("print(40 + 2)", timeout=30)
        assert r.ok and "42" in r.text
    finally:
        await sb.shutdown()


def test_cli_run_on_the_gateway(gateway: tuple[str, str], tmp_path: object) -> None:
    url, token = gateway
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K2LAB_", "JUPYTER_GATE"))}
    env.pop("MOONSHOT_API_KEY", None)
    p = subprocess.run(
        [str(Path(sys.executable).parent / "k2lab"), "run", "--approve", "auto", "--json"]
        + [
            "--gateway-url",
            url,
            "--gateway-token",
            token,
            "demo: estimate pi with a Monte Carlo simulation and check it against math.pi",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    start = next(e for e in events if e.get("type") == "run.start")
    assert start.get("isolation") == "remote", start
    assert token not in p.stdout and token not in p.stderr
    assert SECRET not in p.stdout
    results = [json.dumps(e) for e in events if e.get("type") == "tool.result"]
    assert results and any("3.1" in r for r in results), p.stdout[-2000:]
    assert not any("could not be started" in r for r in results)
