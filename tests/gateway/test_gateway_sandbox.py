"""GatewaySandbox against a real Enterprise Gateway 3.3.0 (tests/gateway/conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from k2lab.sandbox.base import Limits, Sandbox
from k2lab.sandbox.gateway import GatewaySandbox

from .conftest import SECRET

pytestmark = pytest.mark.slow


async def test_execute_state_and_isolation(gateway: tuple[str, str]) -> None:
    url, token = gateway
    async with GatewaySandbox(url, token=token) as sb:
        assert isinstance(sb, Sandbox)
        assert sb.isolation == "remote"
        assert url in sb.isolation_note
        r = await sb.execute("x = 6 * 7\nprint('hi', x)", timeout=30)
        assert r.ok, r.text
        assert "hi 42" in r.text
        r = await sb.execute("x + 1", timeout=30)
        assert r.ok and "43" in r.text
        r = await sb.execute("1/0", timeout=30)
        assert not r.ok and "ZeroDivisionError" in r.text
        # the launcher ran: k2lab's confinement reported itself inside the remote kernel
        r = await sb.execute("import os; print(os.environ.get('USER'))", timeout=30)
        assert "sandbox" in r.text, r.text


async def test_wrong_token_is_a_result_not_an_exception(gateway: tuple[str, str]) -> None:
    url, _ = gateway
    sb = GatewaySandbox(url, token="wrong")
    r = await sb.execute("1", timeout=10)
    await sb.shutdown()
    assert not r.ok and ("403" in r.text or "401" in r.text), r.text


async def test_timeout_interrupts_and_keeps_state(gateway: tuple[str, str]) -> None:
    url, token = gateway
    async with GatewaySandbox(url, token=token) as sb:
        await sb.execute("kept = 'yes'", timeout=30)
        r = await sb.execute("import time\nprint('before')\ntime.sleep(60)", timeout=2)
        assert r.timed_out and not r.ok
        assert "before" in r.text and "interrupted" in r.text, r.text
        assert not r.restarted
        r = await sb.execute("print(kept)", timeout=30)
        assert r.ok and "yes" in r.text


async def test_uninterruptible_code_gets_a_restart(gateway: tuple[str, str]) -> None:
    url, token = gateway
    async with GatewaySandbox(url, token=token, limits=Limits(interrupt_grace=1.0)) as sb:
        code = (
            "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "kept = 1\ntime.sleep(60)"
        )
        r = await sb.execute(code, timeout=2)
        assert r.timed_out and r.restarted, r.text
        r = await sb.execute("print('kept' in dir())", timeout=30)
        assert r.ok and "False" in r.text


async def test_restart_after_crash(gateway: tuple[str, str]) -> None:
    """Enterprise Gateway restarts a dead kernel itself (its auto-restarter): the sandbox joins
    that restart instead of racing it with its own, and the first call after it gets its output
    (it once flaked with an empty success: the new WebSocket's iopub was not live yet). Three
    crashes in a row: that flake came about one restart in three."""
    url, token = gateway
    async with GatewaySandbox(url, token=token) as sb:
        for n in range(3):
            await sb.execute("gone = 1", timeout=30)
            r = await sb.execute("import os; os._exit(3)", timeout=30)
            assert not r.ok and r.restarted, r.text
            assert "died" in r.text
            r = await sb.execute(f"print('gone' in dir(), 2 + {n})", timeout=30)
            assert r.ok and f"False {2 + n}" in r.text, (n, r.text)


async def test_output_limits(gateway: tuple[str, str]) -> None:
    url, token = gateway
    limits = Limits(model_chars=2000, display_bytes=4096)
    async with GatewaySandbox(url, token=token, limits=limits) as sb:
        r = await sb.execute("print('HEAD'); print('x' * 500_000); print('TAIL')", timeout=60)
        assert r.ok and r.truncated
        assert len(r.text) < 4000
        assert "HEAD" in r.text and "TAIL" in r.text
        r = await sb.execute(
            "from IPython.display import HTML, display\n"
            "for i in range(20): display(HTML('<b>' + 'y' * 1000 + '</b>'))",
            timeout=60,
        )
        size = sum(len(str(d["data"])) for d in r.display)
        assert size < 4096 + 2000, size


async def test_no_secret_reaches_the_remote_kernel(
    gateway: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, token = gateway
    monkeypatch.setenv("K2LAB_API_KEY", SECRET)
    monkeypatch.setenv("MOONSHOT_API_KEY", SECRET)
    async with GatewaySandbox(url, token=token) as sb:
        r = await sb.execute(
            "import os\n"
            "print(sorted(os.environ))\n"
            f"print(any({SECRET[:12]!r} in v for v in os.environ.values()))",
            timeout=30,
        )
        assert r.ok, r.text
        assert SECRET not in r.text
        assert "K2LAB_API_KEY" not in r.text and "OPENAI_API_KEY" not in r.text
        assert r.text.strip().endswith("False"), r.text
        # nor the gateway's token
        assert token not in r.text


async def test_concurrent_sandboxes_get_their_own_kernels(gateway: tuple[str, str]) -> None:
    url, token = gateway
    sbs = [GatewaySandbox(url, token=token) for _ in range(3)]
    await asyncio.gather(*(s.start() for s in sbs))
    try:
        assert len({s.kernel_id for s in sbs}) == 3
        rs = await asyncio.gather(
            *(
                s.execute(f"import os; v = {i}; print(v, os.getpid())", timeout=30)
                for i, s in enumerate(sbs)
            )
        )
        pids = {r.text.split()[1] for r in rs}
        assert [r.text.split()[0] for r in rs] == ["0", "1", "2"] and len(pids) == 3
    finally:
        await asyncio.gather(*(s.shutdown() for s in sbs))
