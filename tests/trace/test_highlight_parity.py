"""The saved-trace and panel cards highlight Python as the live widget and the HTML fallback do.

The widget and ``render.highlight_python`` use pygments; the labextension has its own small
tokenizer (``labextension/src/trace-renderer/highlight.ts``) emitting pygments' classes, which the
shared stylesheet colours. Here both colour the same code, character by character, by the colour
the stylesheet gives each class: the golden traces' code (the demo's pi run among them) and a
sample of the constructs people see in tool calls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pygments.lexers import PythonLexer
from pygments.token import _TokenType

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "labextension" / "lib" / "trace-renderer" / "highlight.js"
DATA = Path(__file__).parent / "data"

#: the classes the stylesheet (k2lab/trace/trace_view.css, ``.k2lab-hl``) colours, by colour
COLOUR = {
    **dict.fromkeys(("k", "kn", "kc", "ow"), "keyword"),
    **dict.fromkeys(("s", "s1", "s2", "sd", "sa", "si"), "string"),
    **dict.fromkeys(("c1", "c", "cm"), "comment"),
    **dict.fromkeys(("mi", "mf", "m"), "number"),
    **dict.fromkeys(("nb", "bp"), "builtin"),
    **dict.fromkeys(("nf", "nc"), "definition"),
    "o": "operator",
}

SAMPLE = '''import numpy as np
from math import pi as PI  # a comment
@dataclass
class Point:
    x: float = 0.5
    def __init__(self, n=1_000, *args, **kw) -> None:
        self.n = n if n is not None else 0x1F
        print(f"inside={inside} n={n:,} pi_hat={4 * inside / n:.6f} {{literal}}", end="\\n")
        s = r"\\d+" + b'raw' + """doc "string" """ + 'it\\'s'
        return [i ** 2 for i in range(n) if i % 3 and not False]
async def main():
    await asyncio.sleep(1e-3); x = (yield); y = lambda a: a @ m
    raise ValueError(len(s)) from None
'''


def _pygments_colours(code: str) -> list[str | None]:
    from pygments.token import STANDARD_TYPES

    out: list[str | None] = []
    for ttype, text in PythonLexer().get_tokens(code):
        t: _TokenType = ttype
        out += [COLOUR.get(STANDARD_TYPES.get(t, ""))] * len(text)
    return out


def _codes() -> list[str]:
    codes = [SAMPLE]
    for path in sorted(DATA.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            ev = json.loads(line)
            if ev.get("type") == "tool.proposed" and ev.get("name") == "python":
                try:
                    code = json.loads(ev["arguments"]).get("code")
                except ValueError:
                    continue
                if isinstance(code, str) and code not in codes:
                    codes.append(code)
    return codes


def _built() -> bool:
    """lib/ compiled from the current highlight.ts (built here when stale, as the TS step does)."""
    src = ROOT / "labextension" / "src" / "trace-renderer" / "highlight.ts"
    if not LIB.exists() or src.stat().st_mtime > LIB.stat().st_mtime:
        env_path = f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"
        subprocess.run(
            ["flock", "/tmp/k2lab-build.lock", "jlpm", "build:lib"],
            cwd=ROOT / "labextension",
            env={**os.environ, "PATH": env_path},
            check=True,
            capture_output=True,
            timeout=600,
        )
    return LIB.exists()


def _ts_colours(codes: list[str], tmp: Path) -> list[list[str | None]]:
    (tmp / "package.json").write_text('{"type": "module"}')
    shutil.copy(LIB, tmp / "highlight.js")
    script = (
        "import { pythonTokens } from './highlight.js';\n"
        "import { readFileSync } from 'node:fs';\n"
        "const codes = JSON.parse(readFileSync(0, 'utf-8'));\n"
        "console.log(JSON.stringify(codes.map(c => pythonTokens(c))));\n"
    )
    (tmp / "run.mjs").write_text(script)
    done = subprocess.run(
        ["node", str(tmp / "run.mjs")],
        input=json.dumps(codes),
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp,
    )
    tokens: list[list[list[Any]]] = json.loads(done.stdout)
    return [
        [c for cls, text in toks for c in [COLOUR.get(cls or "")] * len(text)] for toks in tokens
    ]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_cards_colour_python_as_the_widget_does(tmp_path: Path) -> None:
    assert _built()
    codes = _codes()
    assert len(codes) > 5  # the sample and the golden traces' code
    for code, ts in zip(codes, _ts_colours(codes, tmp_path), strict=True):
        py = _pygments_colours(code)
        if len(py) == len(code) + 1:  # pygments ends the text with a newline of its own
            py = py[:-1]
        assert len(ts) == len(code)
        diff = [
            (i, code[max(0, i - 10) : i + 10], py[i], ts[i])
            for i in range(len(code))
            if py[i] != ts[i]
        ]
        assert not diff, diff[:5]
