"""``k2lab demo --lab``: JupyterLab rooted at the checkout, serving examples/demo.ipynb."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from k2lab.cli.demo import NOTEBOOK, lab_command, repo_root
from tests.cli.conftest import K2LAB, clean_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lab_command_shape() -> None:
    cmd = lab_command(["--port", "1"])
    assert cmd[1] == "lab" and f"--ServerApp.root_dir={repo_root()}" in cmd
    assert str(NOTEBOOK) in cmd and cmd[-2:] == ["--port", "1"]


@pytest.mark.skipif(
    not (repo_root() / NOTEBOOK).exists(), reason="examples/demo.ipynb belongs to the notebook area"
)
def test_demo_lab_serves_the_notebook(tmp_path: Path) -> None:
    port, token = _free_port(), "k2test"
    env = clean_env(
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
    )
    proc = subprocess.Popen(
        [
            str(K2LAB), "demo", "--lab", "--no-browser", "--port", str(port),
            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
            f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/api/contents/{NOTEBOOK.as_posix()}?content=0"
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(url, headers={"Authorization": f"token {token}"}).status_code
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert status == 200  # the server is rooted at the checkout and the notebook is there
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
