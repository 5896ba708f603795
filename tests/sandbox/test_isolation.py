"""What each level hides: network, the host's loopback, files, write access; the CPU limit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from k2lab.sandbox.kernel import SandboxKernel
from tests.sandbox.conftest import MARGIN, small_limits

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def loopback_server() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1 (like a Jupyter server's port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.sendall(b"hello from the host\n")
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


async def test_host_loopback(shared: SandboxKernel, loopback_server: int) -> None:
    code = (
        "import socket\ntry:\n"
        f"    s = socket.create_connection(('127.0.0.1', {loopback_server}), timeout=3)\n"
        "    print('REACHED', s.recv(100))\nexcept OSError as e:\n    print('BLOCKED', e)"
    )
    r = await shared.execute(code, timeout=15)
    if shared.isolation == "bwrap":
        assert "BLOCKED" in r.text, r.text  # its own network namespace: not the host's loopback
    else:
        assert "REACHED" in r.text, r.text  # documented: the process level shares the network


async def test_files_hidden_and_read_only(shared: SandboxKernel) -> None:
    code = (
        "import os\n"
        "def can(f, *a):\n    try:\n        f(*a)\n        return True\n"
        "    except OSError:\n        return False\n"
        "def ls(d):\n    return sorted(os.listdir(d)) if can(os.listdir, d) else []\n"
        "print('root_home', ls('/root'))\n"
        f"print('repo', ls({str(ROOT)!r}))\n"
        f"print('pyproject', can(open, {str(ROOT / 'pyproject.toml')!r}))\n"
        "print('write_usr', can(open, '/usr/k2lab_probe', 'w'))\n"
        "print('write_ws', can(open, 'probe.txt', 'w'))\n"
        "print('uid', os.getuid())\n"
        "print('shell', os.popen('echo shell-ok').read().strip())"
    )
    r = await shared.execute(code, timeout=15)
    assert r.ok, r.text
    lines = dict(line.split(" ", 1) for line in r.text.strip().splitlines())
    assert lines["write_ws"] == "True" and lines["shell"] == "shell-ok"
    if shared.isolation == "bwrap":
        # only the skeleton of bind mounts: the interpreter's directory, the venv
        assert lines["root_home"] in ("[]", "['.pyenv']"), r.text
        assert lines["repo"] in ("[]", "['.venv']"), r.text
        assert lines["pyproject"] == "False" and lines["write_usr"] == "False", r.text
        assert lines["uid"] == "1000"
    else:
        assert lines["pyproject"] == "True"  # documented: your files are readable


async def test_shell_escape_works(shared: SandboxKernel) -> None:
    r = await shared.execute("!echo bang-ok", timeout=15)
    assert r.ok and "bang-ok" in r.text, r.text


@pytest.mark.parametrize("level", ["bwrap", "process"])
async def test_cpu_limit_kills_and_restarts(level: str) -> None:
    from tests.sandbox.conftest import skip_unavailable

    skip_unavailable(level)
    limits = small_limits()
    limits.cpu_seconds = 2
    async with SandboxKernel(isolation=level, limits=limits) as sk:
        t0 = time.monotonic()
        r = await sk.execute("while True:\n    pass", timeout=20)
        assert time.monotonic() - t0 < 20 + MARGIN
        assert r.restarted and not r.ok
        assert "SIGXCPU" in r.text or "SIGKILL" in r.text, r.text
        assert (await sk.execute("print('fresh budget')", timeout=10)).ok


async def test_bwrap_with_network_allowed(loopback_server: int) -> None:
    from tests.sandbox.conftest import skip_unavailable

    skip_unavailable("bwrap")
    async with SandboxKernel(isolation="bwrap", network=True, limits=small_limits()) as sk:
        assert sk.isolation == "bwrap" and "network ON" in sk.isolation_note
        code = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {loopback_server}), timeout=5)\n"
            "print(s.recv(100))"
        )
        r = await sk.execute(code, timeout=15)
        assert r.ok and "hello from the host" in r.text, r.text
        r = await sk.execute("import os\nos.listdir('/root')", timeout=10)
        assert ".config" not in r.text  # the files stay hidden with the network on


async def test_input_is_an_error_not_a_hang(shared: SandboxKernel) -> None:
    t0 = time.monotonic()
    r = await shared.execute("input('your name? ')", timeout=10)
    assert not r.ok and "StdinNotImplementedError" in r.text and time.monotonic() - t0 < 5
