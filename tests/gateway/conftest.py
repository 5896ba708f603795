"""A real Jupyter Enterprise Gateway 3.3.0 (its own venv, .venv-gateway/) on 127.0.0.1.

The venv comes from scripts/install.d/40-gateway.sh (run by scripts/install.sh); the fixture runs
that script itself when the venv is missing, so a first run takes ~66 s and later ones none.
The gateway's kernelspec ``k2lab-sandbox`` runs k2lab's launcher from the project's venv, with
the limits in the kernelspec's env (a gateway passes a kernel nothing else of the request but
``KERNEL_*``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
GW_VENV = ROOT / ".venv-gateway"
#: a marker the kernel must never see (the key rule)
SECRET = "sk-gateway-test-" + secrets.token_hex(8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kernelspecs(base: Path) -> None:
    spec = base / "kernels" / "k2lab-sandbox"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "k2lab.sandbox.launch", "-f", "{connection_file}"],
                "display_name": "k2lab sandbox (gateway)",
                "language": "python",
                "interrupt_mode": "signal",
                "env": {
                    "K2LAB_SANDBOX_LEVEL": "process",
                    "K2LAB_SANDBOX_NETWORK": "1",  # the gateway reaches the kernel over TCP
                    "K2LAB_SANDBOX_LIMIT_MEMORY": str(2 * 1024**3),
                    "K2LAB_SANDBOX_LIMIT_CPU_SECONDS": "600",
                    "K2LAB_SANDBOX_LIMIT_FILE_SIZE": str(64 * 1024**2),
                },
                "metadata": {
                    "k2lab": {"sandbox": True},
                    "process_proxy": {
                        "class_name": "enterprise_gateway.services.processproxies."
                        "processproxy.LocalProcessProxy"
                    },
                },
            }
        )
    )


@contextlib.contextmanager
def run_gateway(base: Path) -> Iterator[tuple[str, str]]:
    """Enterprise Gateway on 127.0.0.1 (a free port) with the k2lab-sandbox kernelspec; yields
    (url, token). Also used by benchmarks/bench_gateway.py."""
    exe = GW_VENV / "bin" / "jupyter-enterprisegateway"
    if not exe.exists():
        subprocess.run(["bash", str(ROOT / "scripts/install.d/40-gateway.sh")], check=True)
    _kernelspecs(base / "share")
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        "PATH": f"{GW_VENV / 'bin'}:/usr/bin:/bin",
        "HOME": str(base),
        "JUPYTER_PATH": str(base / "share"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "K2LAB_API_KEY": SECRET,  # in the gateway's own env: must not reach kernels either
        "OPENAI_API_KEY": SECRET,
    }
    log = open(base / "eg.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(exe),
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--EnterpriseGatewayApp.auth_token={token}",
            "--EnterpriseGatewayApp.list_kernels=True",
            "--KernelSpecManager.ensure_native_kernel=False",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            r = httpx.get(f"{url}/api/kernelspecs", headers={"Authorization": f"token {token}"})
            if r.status_code == 200 and "k2lab-sandbox" in r.json()["kernelspecs"]:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            raise RuntimeError(
                "enterprise gateway did not start:\n" + (base / "eg.log").read_text()
            )
        time.sleep(0.2)
    try:
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if os.environ.get("K2LAB_GATEWAY_LOG"):
            sys.stderr.write((base / "eg.log").read_text())


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with run_gateway(tmp_path_factory.mktemp("eg")) as gw:
        yield gw
