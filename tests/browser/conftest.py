"""Browser-test harness: a real JupyterLab started by the tests, driven by Playwright in Chromium.

Owns two fixtures every browser test uses:

- ``jupyterlab`` (session): ``launch_lab``'s ``.venv/bin/jupyter lab`` on a free port with a random
  token, a temp root dir, workspaces dir, user-settings dir and Jupyter config/data/runtime dirs,
  no API keys in its environment (so the offline demo model answers) and the k2lab sessions dir in
  a temp dir. A test that needs a lab of its own (more env or options: an MCP config) calls
  ``launch_lab(base, env=..., args=...)``.
- ``page`` (function): a fresh browser context (viewport 1400x900) in Debian's Chromium.

Browser tests run in their own pytest invocation (``pytest -m browser tests``) because
pytest-jupyter's autouse event-loop fixtures break Playwright's sync API; in case a conftest higher
up enables pytest-jupyter, this conftest overrides those autouse fixtures with no-ops for the
browser tests.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# keys that would make the server talk to a real model; the browser tests use the demo model
_KEY_VARS = (
    "K2LAB_API_KEY",
    "MOONSHOT_API_KEY",
    "OPENROUTER_API_KEY",
    "K2LAB_BASE_URL",
    "K2LAB_PRESET",
    "K2LAB_MODEL",
    "K2LAB_APPROVE",
)


@dataclass
class JupyterLab:
    url: str  # base URL, ends with "/"
    token: str
    root_dir: Path
    sessions_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    def lab_url(self, path: str = "", *, reset: bool = True) -> str:
        """URL of the lab UI (optionally opening ``path`` in the root dir), token included."""
        where = f"lab/tree/{path}" if path else "lab"
        query = f"token={self.token}" + ("&reset" if reset else "")
        return f"{self.url}{where}?{query}"

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """Call a JSON API route of the server (``path`` relative to the base URL)."""
        import json

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jupyter() -> str:
    exe = ROOT / ".venv" / "bin" / "jupyter"
    if exe.exists():
        return str(exe)
    found = Path(sys.executable).parent / "jupyter"
    return str(found)


# -- pytest-jupyter isolation: no-op overrides of its autouse fixtures (see module docstring) -----


@pytest.fixture
def jp_asyncio_loop() -> Iterator[None]:
    yield None


@pytest.fixture
def jp_server_cleanup() -> Iterator[None]:
    yield None


# -- JupyterLab ------------------------------------------------------------------------------------


@contextmanager
def launch_lab(
    base: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[JupyterLab]:
    """A JupyterLab of its own under ``base`` (see the module docstring), ready, stopped on exit;
    ``env`` and ``args`` add to its environment and command line (an MCP config, say)."""
    dirs = {
        n: base / n for n in ("root", "workspaces", "settings", "config", "data", "runtime", "sess")
    }
    for d in dirs.values():
        d.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    full_env = {k: v for k, v in os.environ.items() if k not in _KEY_VARS}
    full_env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),  # no user config; sys.prefix config still applies
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_PLATFORM_DIRS="1",
        K2LAB_SESSIONS_DIR=str(dirs["sess"]),
        K2LAB_DEMO_DELAY=os.environ.get("K2LAB_TEST_DEMO_DELAY", "0.01"),
        K2LAB_APPROVE="ask",
        PYTHONUNBUFFERED="1",
    )
    full_env.update(env or {})
    cmd = [
        _jupyter(),
        "lab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
        f"--LabApp.user_settings_dir={dirs['settings']}",
        f"--ServerApp.root_dir={dirs['root']}",
        f"--K2LabApp.sessions_dir={dirs['sess']}",
        *args,
    ]
    log_path = base / "jupyterlab.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=dirs["root"]
        )
        lab = JupyterLab(
            url=f"http://127.0.0.1:{port}/",
            token=token,
            root_dir=dirs["root"],
            sessions_dir=dirs["sess"],
            log_path=log_path,
            proc=proc,
        )
        try:
            wait_ready(lab)
            yield lab
        finally:
            stop(proc)


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    with launch_lab(tmp_path_factory.mktemp("jupyterlab")) as lab:
        yield lab


def wait_ready(lab: JupyterLab, timeout: float = 60) -> None:
    """Until the server answers ``api/status`` (its log in the error if it exits or never does)."""
    deadline = time.monotonic() + timeout
    while True:
        if lab.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited ({lab.proc.returncode}):\n{lab.log()}")
        try:
            lab.api("api/status")
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jupyter lab not ready in {timeout:.0f} s:\n{lab.log()}"
                ) from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- Playwright --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install.sh as root (apt-get chromium)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        # on failure, keep what the page looked like for the person reading the log
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            SCREENSHOTS.mkdir(exist_ok=True)
            try:
                pg.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}.png"))
            except Exception:  # the page may already be gone; the failure itself is reported
                pass
        context.close()


@pytest.fixture
def screenshot(page: Any) -> Any:
    """``screenshot(name, locator=None)``: a PNG in tests/browser/screenshots/, returns its path."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(name: str, locator: Any = None) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        (locator or page).screenshot(path=str(path))
        return path

    return take


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
