"""The panel's "Copy into the sandbox" (``POST messages`` with ``options.with``): named variables
of a real notebook kernel (started by the real Jupyter server's kernel manager) pickled there,
loaded into the session's real sandbox kernel, described to the model as ``%k2 --with`` does; a
refusal is a 400 naming why, and no run starts; the notebook's kernel keeps nothing of it."""

from __future__ import annotations

from typing import Any

import pytest

from k2lab.providers.demo import DEMO_PROMPTS
from k2lab.sandbox.base import Limits
from tests.server.conftest import Api

PROMPT = DEMO_PROMPTS["your_data"]

SETUP = """
import pandas as pd
sales = pd.DataFrame({"units": [3, 5, 2, 8], "region": ["N", "S", "E", "W"]})
gen = (i for i in range(3))
"""
#: what the notebook's user can see of its own state
PROBE = "print(sorted(k for k in globals() if not k.startswith('_')), len(In))"


@pytest.fixture
def k2_config() -> dict[str, Any]:
    return {"base_url": "", "api_key": "", "model": ""}  # the offline demo model


async def _run(kc: Any, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    await kc.execute_interactive(code, output_hook=hook, timeout=60)
    return "".join(out)


@pytest.fixture
async def notebook(jp_serverapp: Any) -> Any:
    """A notebook kernel of the server (as JupyterLab starts one), with ``sales`` defined."""
    km = jp_serverapp.kernel_manager
    kid = await km.start_kernel(kernel_name="python3")
    kc = km.get_kernel(kid).client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    await _run(kc, SETUP)
    yield kid, kc
    kc.stop_channels()
    await km.shutdown_kernel(kid, now=True)


async def test_a_copied_dataframe_is_in_the_sandbox_and_described(api: Api, notebook: Any) -> None:
    kid, kc = notebook
    before = await _run(kc, PROBE)
    sid = await api.new_session(settings={"approve": "auto"})
    body = {"text": PROMPT, "options": {"with": {"kernel_id": kid, "names": ["sales"]}}}
    code, data = await api.post("sessions", sid, "messages", body=body)
    assert code == 202, data
    evs = await api.wait_for(sid, lambda es: any(e["type"] == "run.end" for e in es), 120)
    # the prompt stays the user's words; what the model was told about the copy is run.start.note
    assert evs[0]["prompt"] == PROMPT and "- sales: DataFrame, shape (4, 2)" in evs[0]["note"]
    notices = [e["message"] for e in evs if e["type"] == "notice"]
    assert any(
        "copied into the sandbox (--with): sales (DataFrame, shape (4, 2), columns units (int64)"
        in n
        for n in notices
    ), notices
    results = [e for e in evs if e["type"] == "tool.result"]
    # the demo read the note and described the copy in the sandbox: real pandas output
    assert results and results[0]["ok"], [
        (e["type"], e.get("answer") or e.get("message")) for e in evs if "delta" not in e["type"]
    ]
    assert "name=sales type=DataFrame rows=4 columns=2" in results[0]["output"]
    (end,) = [e for e in evs if e["type"] == "run.end"]
    assert end["stop_reason"] == "completed" and "4 rows, 2 columns" in end["answer"]
    # nothing in the notebook changed: no new name; In grew only by the probe itself
    names, n = before.strip().rsplit(" ", 1)
    assert (await _run(kc, PROBE)).strip() == f"{names} {int(n) + 1}"


@pytest.mark.parametrize(
    ("names", "says"),
    [
        (["nope"], "no variable 'nope' in the notebook's kernel"),
        (["gen"], "cannot copy 'gen' (generator): it cannot be pickled"),
        (["big"], f"the limit is {Limits().transfer_bytes:,} (Limits.transfer_bytes)"),
    ],
)
async def test_a_refused_copy_is_a_clear_400_and_no_run_starts(
    api: Api, notebook: Any, names: list[str], says: str
) -> None:
    kid, kc = notebook
    if names == ["big"]:
        await _run(kc, f"big = b'x' * {Limits().transfer_bytes + 1}")
    sid = await api.new_session()
    body = {"text": PROMPT, "options": {"with": {"kernel_id": kid, "names": ["sales", *names]}}}
    code, data = await api.post("sessions", sid, "messages", body=body)
    assert code == 400, data
    assert "Copy into the sandbox" in data["message"] and says in data["message"], data
    assert await api.events(sid) == []


async def test_an_unknown_kernel_or_heavy_mode_is_refused(api: Api, notebook: Any) -> None:
    kid, _ = notebook
    sid = await api.new_session()
    body = {"text": PROMPT, "options": {"with": {"kernel_id": "no-such-kernel", "names": ["x"]}}}
    code, data = await api.post("sessions", sid, "messages", body=body)
    assert code == 400 and "no running kernel 'no-such-kernel'" in data["message"], data
    body = {"text": PROMPT, "options": {"heavy": 2, "with": {"kernel_id": kid, "names": ["sales"]}}}
    code, data = await api.post("sessions", sid, "messages", body=body)
    assert code == 400 and "heavy mode does not copy" in data["message"], data
    body = {"text": PROMPT, "options": {"with": {"kernel_id": kid, "names": ["os.system"]}}}
    code, data = await api.post("sessions", sid, "messages", body=body)
    assert code == 400 and "is not a variable name" in data["message"], data
    assert await api.events(sid) == []
