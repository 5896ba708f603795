"""``k2lab demo``: the main job ``scripts/start.sh`` runs.

``--lab`` opens JupyterLab on ``examples/demo.ipynb``; ``--cli`` plays the offline demo model's
scripted demos in the terminal (auto approval, progress on stderr, answers on stdout). The default
is ``--lab`` when JupyterLab is installed and the notebook exists, else ``--cli``. The terminal
demo always uses the offline demo model, even when a key is set: it must cost nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import k2lab
from k2lab.cli.run import RunOptions, execute_run
from k2lab.cli.term import EXIT_OK, CliFailure, err, out
from k2lab.config import Settings
from k2lab.providers.demo import DEMO_MODEL_LABEL, DEMO_PROMPTS

NOTEBOOK = Path("examples") / "demo.ipynb"


def repo_root() -> Path:
    """The checkout k2lab runs from (an editable install), else the current directory."""
    root = Path(k2lab.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def lab_available() -> bool:
    return importlib.util.find_spec("jupyterlab") is not None and (repo_root() / NOTEBOOK).exists()


def lab_command(extra: list[str]) -> list[str]:
    venv_jupyter = Path(sys.executable).parent / "jupyter"
    jupyter = str(venv_jupyter) if venv_jupyter.exists() else shutil.which("jupyter") or "jupyter"
    cmd = [jupyter, "lab", f"--ServerApp.root_dir={repo_root()}", str(NOTEBOOK)]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")  # jupyter refuses to run as root without it
    return cmd + extra


def start_lab(extra: list[str]) -> int:
    root = repo_root()
    if not (root / NOTEBOOK).exists():
        raise CliFailure(f"{root / NOTEBOOK} does not exist; try `k2lab demo --cli`")
    if importlib.util.find_spec("jupyterlab") is None:
        raise CliFailure("JupyterLab is not installed; run `bash scripts/install.sh`")
    cmd = lab_command(extra)
    err(f"k2lab: starting JupyterLab on {NOTEBOOK} (the {DEMO_MODEL_LABEL} answers without a key)")
    os.chdir(root)
    os.execv(cmd[0], cmd)  # replaces this process: Ctrl-C and exit codes are jupyter's own


async def run_cli_demos(
    settings: Settings, names: list[str], *, trace: str | None, workspace: Path | None = None
) -> int:
    # the demo costs nothing: always the offline model, approvals automatic
    settings = replace(settings, api_key="", base_url="", approve="auto")
    err(f"k2lab demo: the {DEMO_MODEL_LABEL} plays {len(names)} scripted demo(s); no key needed.")
    for i, name in enumerate(names):
        prompt = DEMO_PROMPTS[name]
        err(f"\n=== demo {i + 1}/{len(names)}: {prompt}")
        path = trace if trace is None or len(names) == 1 else f"{trace}.{name}.jsonl"
        code, answer = await execute_run(
            settings,
            prompt,
            RunOptions(trace=path, verbose=True, announce_demo=False, workspace=workspace),
        )
        out(f"\n## {prompt}\n\n{answer}\n")
        if code != EXIT_OK:
            return code
    return EXIT_OK
