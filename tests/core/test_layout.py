"""The package layout the design section promises: the engine and the run view never import a face.

A cycle (``trace`` importing the notebook face, which imports ``trace``) made every face load the
widget code; this pins the direction of imports: faces -> trace -> events, faces -> agent.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "k2lab"

#: package -> packages of k2lab it must not import
FORBIDDEN = {
    "agent": {"notebook", "server", "cli"},
    "trace": {"notebook", "server", "cli"},
    "tools": {"notebook", "server", "cli"},
    "sandbox": {"notebook", "server", "cli", "trace"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m.split(".")[1] for m in found if m.startswith("k2lab.") and m.count(".") >= 1}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_never_import_a_face(package: str) -> None:
    bad = [
        f"{p.relative_to(ROOT.parent)} imports k2lab.{sub}"
        for p in sorted((ROOT / package).rglob("*.py"))
        for sub in _imports(p) & FORBIDDEN[package]
    ]
    assert not bad, "\n".join(bad)


def test_the_widgets_package_is_gone_and_the_notebook_face_is_one_package() -> None:
    assert not (ROOT / "widgets").exists()
    for name in ("magics.py", "session.py", "commands.py", "widget.py", "static/trace_view.js"):
        assert (ROOT / "notebook" / name).is_file(), name
