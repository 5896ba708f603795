"""Binder without Docker (issue 11): ``binder/postBuild`` in a fresh virtual environment built from
``binder/environment.yml``'s pins, then JupyterLab from that environment opens
``examples/quickstart.ipynb`` in Chromium and its first cells run on the offline demo model.

repo2docker cannot run here (no Docker), so the test plays its part: conda's pins are read from
the file and checked (the interpreter and Node that are here must match them) or pip-installed
(the Python packages), the committed tree is copied as a Binder checkout would be (no build
output, no node_modules, no uncommitted work), and postBuild runs from the copy's root with the
environment first on ``PATH``. Nothing of the developer's ``.venv`` is visible to the environment
or the server.

Slow-ish (about two minutes: pip and jlpm installs, the production build of the labextension).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect

from tests.browser.conftest import _KEY_VARS, ROOT, JupyterLab, _free_port, stop, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

BINDER = ROOT / "binder"


def conda_pins(path: Path) -> tuple[dict[str, str], list[str]]:
    """(conda-only pins by name, pip requirements) from an environment.yml.

    Conda's ``name=1.2`` means "1.2 or any 1.2.x": pip spells it ``name==1.2.*``; comparison
    specs (``>=4.2,<5``) are the same in both. ``python``, ``nodejs`` and ``pip`` are conda-only
    (checked against what is installed here, not installed); a nested ``pip:`` list is taken
    as is."""
    env = yaml.safe_load(path.read_text())
    conda_only: dict[str, str] = {}
    reqs: list[str] = []
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            reqs += [str(r) for r in dep.get("pip", [])]
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", str(dep))
        assert m, f"{path}: cannot read the pin {dep!r}"
        name, spec = m.group(1), m.group(2)
        if name in ("python", "nodejs", "pip"):
            conda_only[name] = spec
        elif re.fullmatch(r"=[^=<>!]+", spec):
            reqs.append(f"{name}=={spec[1:]}.*")
        else:
            reqs.append(name + spec)
    return conda_only, reqs


def matches(version: str, spec: str) -> bool:
    """Does ``version`` (``3.11.7``) satisfy a conda spec such as ``=3.11`` (or no spec)?"""
    if not spec:
        return True
    m = re.fullmatch(r"=+([\d.]+)\*?", spec)
    assert m, f"unsupported conda pin {spec!r} for an interpreter"
    want = m.group(1).rstrip(".").split(".")
    return version.split(".")[: len(want)] == want


def copy_checkout(dest: Path) -> None:
    """The committed tree (``git archive HEAD``), as Binder checks it out: work in progress in
    the work tree, build output and node_modules are not part of it."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def clean_env(prefix: Path, home: Path) -> dict[str, str]:
    """The environment first on PATH, no key, none of the developer's venv or Jupyter dirs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _KEY_VARS and not k.startswith(("JUPYTER", "VIRTUAL_ENV", "PYTHON", "K2LAB_"))
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p]
    env.update(
        PATH=os.pathsep.join([str(prefix / "bin"), *path]),
        VIRTUAL_ENV=str(prefix),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(home / "ipython"),
        K2LAB_SESSIONS_DIR=str(home / "sessions"),
        K2LAB_DEMO_DELAY="0.01",
    )
    return env


def run(cmd: list[str], log: Path, **kw: Any) -> float:
    """Run ``cmd`` with its output in ``log``; fail with the log's tail. Returns seconds taken."""
    t0 = time.monotonic()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw).returncode
    if rc != 0:
        lines = log.read_text(errors="replace").splitlines()
        tail = "\n".join([ln for ln in lines if "WARNING: Location" not in ln][-40:])
        pytest.fail(f"{' '.join(cmd)} failed ({rc}):\n{tail}")
    return time.monotonic() - t0


@dataclass
class BinderLab:
    url: str
    token: str
    prefix: Path
    repo: Path
    timings: dict[str, float]

    def link(self, urlpath: str) -> str:
        """What ``https://mybinder.org/v2/gh/OWNER/REPO/HEAD?urlpath=<urlpath>`` lands on."""
        return f"{self.url}{urlpath}?token={self.token}&reset"


@pytest.fixture(scope="module")
def binder_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BinderLab]:
    base = tmp_path_factory.mktemp("binder")
    repo, prefix, home, log = base / "repo", base / "env", base / "home", base / "build.log"
    for d in (repo, home / "config", home / "data", home / "runtime", home / "sessions"):
        d.mkdir(parents=True)
    conda_only, reqs = conda_pins(BINDER / "environment.yml")
    py = ".".join(map(str, sys.version_info[:3]))
    assert matches(py, conda_only.get("python", "")), (
        f"environment.yml pins python{conda_only['python']}; this interpreter is {py}"
    )
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    assert matches(node.lstrip("v"), conda_only.get("nodejs", "")), (
        f"environment.yml pins nodejs{conda_only['nodejs']}; node here is {node}"
    )
    assert any(r.startswith("jupyterlab") for r in reqs), reqs
    timings: dict[str, float] = {}
    copy_checkout(repo)
    env = clean_env(prefix, home)
    base_python = getattr(sys, "_base_executable", sys.executable)
    timings["venv"] = run([base_python, "-m", "venv", str(prefix)], log, env=env)
    pip = [str(prefix / "bin" / "python"), "-m", "pip", "install", "-q"]
    timings["pins"] = run([*pip, *reqs], log, env=env)
    timings["postBuild"] = run(["bash", "binder/postBuild"], log, env=env, cwd=repo)
    port, token = _free_port(), secrets.token_hex(16)
    lab_log = (base / "lab.log").open("wb")
    proc = subprocess.Popen(
        [
            str(prefix / "bin" / "jupyter"),
            "lab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--port={port}",
            "--port-retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={repo}",
            f"--LabApp.workspaces_dir={home / 'workspaces'}",
            f"--LabApp.user_settings_dir={home / 'settings'}",
        ],
        env=env,
        cwd=repo,
        stdout=lab_log,
        stderr=subprocess.STDOUT,
    )
    lab = JupyterLab(
        url=f"http://127.0.0.1:{port}/",
        token=token,
        root_dir=repo,
        sessions_dir=home / "sessions",
        log_path=base / "lab.log",
        proc=proc,
    )
    try:
        t0 = time.monotonic()
        wait_ready(lab)
        timings["lab ready"] = time.monotonic() - t0
        yield BinderLab(lab.url, token, prefix, repo, timings)
    finally:
        stop(proc)
        lab_log.close()
        print("binder timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}))


def test_environment_pins_read_as_pip_requirements(tmp_path: Path) -> None:
    f = tmp_path / "environment.yml"
    f.write_text(
        "dependencies:\n  - python=3.11\n  - nodejs=20\n  - pip\n  - jupyterlab>=4.2,<5\n"
        "  - pandas=2.2\n  - pip:\n    - nbgitpuller==1.2.1\n"
    )
    conda_only, reqs = conda_pins(f)
    assert conda_only == {"python": "=3.11", "nodejs": "=20", "pip": ""}
    assert reqs == ["jupyterlab>=4.2,<5", "pandas==2.2.*", "nbgitpuller==1.2.1"]
    assert matches("3.11.7", "=3.11") and not matches("3.12.1", "=3.11")
    assert matches("20.20.2", "=20") and not matches("2.0.1", "=20")


def test_postbuild_env_serves_the_extension_and_its_settings(binder_lab: BinderLab) -> None:
    prefix = binder_lab.prefix
    # the wheel put the extension, the server extension's config and the sandbox kernelspec in
    # the environment (nothing links back to the checkout or the developer's venv)
    ext = prefix / "share" / "jupyter" / "labextensions" / "k2lab"
    assert (ext / "package.json").is_file() and not ext.is_symlink()
    assert (prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "k2lab.json").is_file()
    assert (prefix / "share" / "jupyter" / "kernels" / "k2lab-sandbox" / "kernel.json").is_file()
    overrides = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    news = json.loads(overrides.read_text())["@jupyterlab/apputils-extension:notification"]
    assert news["fetchNews"] == "false"
    installed = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import k2lab, sys; print(k2lab.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    assert installed.startswith(str(prefix)), installed


def test_binder_link_opens_the_quickstart_and_it_runs(binder_lab: BinderLab, page: Any) -> None:
    page.goto(binder_lab.link("lab/tree/examples/quickstart.ipynb"))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    expect(page.locator(".jp-Notebook h1").first).to_contain_text("k2lab quickstart")
    page.wait_for_selector("text=| Idle", timeout=60_000)
    # the k2lab side panel is there (the extension loaded from the environment)
    page.locator("#jp-main-dock-panel").click(position={"x": 300, "y": 300})
    page.keyboard.press("Control+Alt+k")
    panel = page.locator("#k2lab-panel")
    panel.locator(".k2lab-prompt-input").wait_for(state="visible")
    expect(panel.locator(".k2lab-status")).to_contain_text("offline demo model")
    # run the cells down to the first %%k2: %load_ext, %k2 config, the data question
    page.locator(".jp-Notebook .jp-Cell").first.click()
    cells = page.locator(".jp-Notebook .jp-Cell")
    for _ in range(6):
        page.keyboard.press("Shift+Enter")
    expect(cells.nth(3).locator(".jp-OutputArea")).to_contain_text(
        "offline demo model", timeout=30_000
    )
    live = page.locator(".k2lab-live")
    live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    expect(live.locator(".k2lab-head")).to_contain_text("waiting for you")
    live.locator(".k2lab-call").first.locator("button.k2lab-approve").click()
    live.locator(".k2lab-call").nth(1).wait_for(timeout=60_000)  # it ran; the model went on
    # no "get notified about Jupyter news" toast over the demo (postBuild's settings override)
    assert page.get_by_text("official Jupyter news").count() == 0
    live.locator(".k2lab-stop").first.click()
    live.wait_for(state="detached", timeout=60_000)  # the live view became the saved trace
