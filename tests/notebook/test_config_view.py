"""``%k2 config`` as a new user reads it (issue 11): no row dumping the ``sources`` dict, the
model row says the offline demo model answers when it does, empty values read "not set"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

IPYTHON = Path(sys.executable).parent / "ipython"
SHOW = """
import json
from IPython.utils.capture import capture_output
get_ipython().run_line_magic("load_ext", "k2lab")
with capture_output() as cap:
    get_ipython().run_line_magic("k2", "config")
print("K2CONFIG" + json.dumps(cap.outputs[0].data))
"""
KEY_VARS = ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "OPENROUTER_API_KEY", "K2LAB_BASE_URL",
            "K2LAB_PRESET", "K2LAB_MODEL", "K2LAB_GATEWAY_URL")  # fmt: skip


def config(tmp_path: Path, **env: str) -> tuple[dict[str, str], str]:
    """``%k2 config`` in a fresh IPython (its own process: no shared test shell): the text rows
    by name, and the HTML table."""
    script = tmp_path / "show.ipy"
    script.write_text(SHOW)
    clean = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    out = subprocess.run(
        [str(IPYTHON), "--no-banner", "--colors=NoColor", str(script)],
        env={**clean, "IPYTHONDIR": str(tmp_path / "ipython"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("K2CONFIG")), None)
    assert line, out.stdout + out.stderr
    data = json.loads(line[len("K2CONFIG") :])
    rows = {}
    for row in data["text/plain"].splitlines():
        name, _, rest = row.partition("  ")
        rows[name.strip()] = rest.strip()
    return rows, data["text/html"]


def test_config_has_no_dict_dump_and_no_blank_values(tmp_path: Path) -> None:
    rows, table = config(tmp_path)
    assert "sources" not in rows and "{" not in "".join(rows.values())
    assert "gateway_token_set" not in rows
    for name in ("base_url", "preset", "gateway_url", "data"):
        assert rows[name].startswith("not set"), (name, rows[name])
    assert "<code></code>" not in table and "<em>not set</em>" in table


def test_config_says_the_demo_model_answers_instead_of_the_model_name(tmp_path: Path) -> None:
    rows, _ = config(tmp_path)
    assert rows["talks to"].startswith("offline demo model")
    assert "the offline demo model answers" in rows["model"]
    rows, table = config(tmp_path, K2LAB_API_KEY="sk-test-config-view")
    assert rows["model"].split()[:2] == ["kimi-k2-thinking", "default"]
    assert "demo" not in rows["model"] and "sk-test-config-view" not in table
