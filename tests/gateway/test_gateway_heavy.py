"""Heavy mode on a gateway: runtime.lane_factory with a gateway setting gives each lane its own
remote kernel (real Enterprise Gateway, real HTTP to the fake model)."""

from __future__ import annotations

import asyncio

import pytest

from k2lab.agent.decisions import AutoApprove
from k2lab.agent.heavy import AGGREGATE, HeavyRun
from k2lab.config import resolve_settings
from k2lab.runtime import lane_factory
from tests.agent.test_heavy import Aside, by_lane, collect, lane_script, provider, tool_outputs
from tests.fixtures.fake_server import ConversationRouter, FakeModel

pytestmark = pytest.mark.slow


async def test_each_lane_gets_its_own_remote_kernel(
    gateway: tuple[str, str], fake_model: FakeModel
) -> None:
    url, token = gateway
    code_pid = "import os\nsecret = 'mine'\nprint('pid', os.getpid(), os.environ.get('USER'))"
    scripts = [
        lane_script(1, code_pid, "42 from lane 1", latency=0.3),
        lane_script(2, code_pid, "42 from lane 2", latency=0.3),
        lane_script(3, "print('seen' if 'secret' in globals() else 'unset')", "42 from lane 3"),
    ]
    fake_model.respond_with(ConversationRouter(scripts, aside=Aside()))
    settings = resolve_settings(
        {"base_url": fake_model.base_url, "approve": "auto"},
        environ={"JUPYTER_GATEWAY_URL": url, "JUPYTER_GATEWAY_AUTH_TOKEN": token},
        options_are_the_owners=True,
    )
    p = provider(fake_model)
    heavy = HeavyRun(3, lane_factory(settings, p, AutoApprove()), p, run_id="G1")
    kernels_before = len(await _kernels(url, token))
    events = await collect(heavy, timeout=120)
    lanes = by_lane(events)
    assert set(lanes) == {"1", "2", "3", AGGREGATE}
    outs = [" ".join(tool_outputs(lanes[k])) for k in "123"]
    pids = [o.split("pid ")[1].split()[0] for o in outs if "pid " in o]
    assert len(pids) == 2 and len(set(pids)) == 2, outs  # two lanes, two remote kernels
    assert all("sandbox" in o for o in outs if "pid " in o), outs  # k2lab's launcher ran there
    assert sum("unset" in o for o in outs) == 1 and not any("seen" in o for o in outs), outs
    starts = [e for e in events if e.type == "run.start" and e.lane in "123"]
    assert {getattr(e, "isolation", "") for e in starts} == {"remote"}
    assert heavy.outcome is not None and heavy.outcome.stop_reason == "completed"
    # every lane's kernel is shut down on the gateway (HeavyRun closes a lane's sandbox after the
    # lane has signalled its end, so the DELETEs may land just after the run's last event)
    left = await _kernels(url, token)
    for _ in range(50):
        if len(left) == kernels_before:
            break
        await asyncio.sleep(0.2)
        left = await _kernels(url, token)
    assert len(left) == kernels_before


async def _kernels(url: str, token: str) -> list[object]:
    import httpx

    async with httpx.AsyncClient(headers={"Authorization": f"token {token}"}) as c:
        r = await c.get(f"{url}/api/kernels")
        r.raise_for_status()
        return list(r.json())
