"""Starting sandboxes through a caller's kernel manager (the Jupyter server's, a gateway's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import AsyncMultiKernelManager

from k2lab.sandbox.isolation import bwrap_status
from k2lab.sandbox.kernel import SandboxKernel
from k2lab.sandbox.managers import kernel_spec_dict, runs_kernels_elsewhere

ROOT = Path(__file__).resolve().parents[2]


class GatewayMultiKernelManager(AsyncMultiKernelManager):
    """A real multi-kernel manager standing in for jupyter_server's GatewayMappingKernelManager
    (same API; recognised as remote by its name, as the real one is). Kernels run locally."""


def test_shipped_kernelspec_matches_the_code() -> None:
    shipped = json.loads((ROOT / "kernel" / "kernel.json").read_text())
    assert shipped == kernel_spec_dict()
    spec = KernelSpecManager().get_kernel_spec("k2lab-sandbox")  # installed by the install hook
    assert spec.argv == shipped["argv"] and spec.interrupt_mode == "message"


def test_local_managers_are_not_remote() -> None:
    assert not runs_kernels_elsewhere(AsyncMultiKernelManager(), "k2lab-sandbox")
    assert runs_kernels_elsewhere(GatewayMultiKernelManager(), "k2lab-sandbox")


async def test_local_server_manager_still_gets_ipc_isolation() -> None:
    # a local server's manager would start the sandbox over TCP: SandboxKernel starts it itself
    mkm = AsyncMultiKernelManager()
    async with SandboxKernel(isolation="auto", kernel_manager=mkm) as sk:
        assert mkm.list_kernel_ids() == []
        assert sk.isolation in ("bwrap", "process")
        if bwrap_status()[0]:
            assert sk.isolation == "bwrap" and not sk.network
        assert (await sk.execute("print(2 + 2)", timeout=10)).text.strip() == "4"


async def test_remote_manager_starts_the_kernelspec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K2LAB_API_KEY", "sk-probe-remote-123")
    mkm = GatewayMultiKernelManager()
    async with SandboxKernel(isolation="auto", kernel_manager=mkm) as sk:
        assert sk.isolation == "remote"
        assert "remote" in sk.isolation_note
        assert len(mkm.list_kernel_ids()) == 1
        r = await sk.execute("import os\nprint(os.environ['K2LAB_ISOLATION'])", timeout=10)
        assert r.ok and r.text.strip() in ("bwrap", "process")  # the launcher ran
        env = (await sk.execute("dict(os.environ)", timeout=10)).text
        assert "sk-probe-remote-123" not in env and "K2LAB_API_KEY" not in env
        r = await sk.execute("import os\nos._exit(1)", timeout=10)
        assert r.restarted and "died" in r.text, r.text
        assert (await sk.execute("print('again')", timeout=10)).ok
        r = await sk.execute("import time\ntime.sleep(30)", timeout=2)
        assert r.timed_out and "Timed out after 2 s" in r.text, r.text
    assert mkm.list_kernel_ids() == []


@pytest.mark.parametrize("bad", ["sandboxy", ""])
async def test_unknown_level_is_a_clear_error(bad: str) -> None:
    from k2lab.sandbox.kernel import SandboxError

    with pytest.raises(SandboxError, match="unknown isolation level"):
        await SandboxKernel(isolation=bad).start()


def test_auto_falls_back_to_process_with_a_warning(tmp_path: Path) -> None:
    """Where bwrap is missing (PATH without it, as on Binder), "auto" runs at the process level
    and says so; an explicit "bwrap" is refused with the reason."""
    import subprocess
    import sys

    script = (
        "import asyncio\n"
        "from k2lab.sandbox.kernel import SandboxKernel, SandboxError\n"
        "async def main():\n"
        "    async with SandboxKernel(isolation='auto') as sk:\n"
        "        print('LEVEL', sk.isolation)\n"
        "        print('NOTE', sk.isolation_note)\n"
        "        print('RUN', (await sk.execute('print(3 * 3)', timeout=10)).text.strip())\n"
        "    try:\n"
        "        await SandboxKernel(isolation='bwrap').start()\n"
        "    except SandboxError as e:\n"
        "        print('REFUSED', e)\n"
        "asyncio.run(main())\n"
    )
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90
    )
    out = dict(line.split(" ", 1) for line in p.stdout.splitlines() if " " in line)
    assert out.get("LEVEL") == "process", p.stdout + p.stderr
    assert "can read your files" in out["NOTE"] and "not installed" in out["NOTE"]
    assert out["RUN"] == "9"
    assert "bwrap' was requested but is unavailable" in out["REFUSED"]
