"""Every cut tool output reads the same to the model (issue 9: one output truncator).

The sandbox's python output, an MCP result and a notebook tool's result were cut by three pieces
of code in three formats ("characters omitted", "characters cut"); now one function cuts them all.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from k2lab.sandbox.output import HeadTail, head_tail
from k2lab.tools import notebook
from k2lab.tools.mcp import MAX_OUTPUT, convert_result

MARK = re.compile(r"\n\[\.\.\. ([\d,]+) characters omitted \.\.\.\]\n")


def test_mcp_and_notebook_results_are_cut_as_the_sandbox_cuts() -> None:
    text = "".join(f"line {i}\n" for i in range(20_000))
    streamed = HeadTail(MAX_OUTPUT)
    for i in range(0, len(text), 997):  # the sandbox's streaming cut, fed in pieces
        streamed.add(text[i : i + 997])

    mcp = convert_result(SimpleNamespace(content=[SimpleNamespace(type="text", text=text)]))
    assert mcp.truncated and mcp.output == streamed.text()

    cut, was_cut = notebook._bounded(text)
    assert was_cut and (cut, was_cut) == head_tail(text, notebook.MODEL_CHARS)
    for out in (mcp.output, cut):
        m = MARK.search(out)
        assert m, out[:200]
        assert len(out) - len(m.group(0)) + int(m.group(1).replace(",", "")) == len(text)


def test_short_outputs_are_left_alone() -> None:
    assert head_tail("short", 100) == ("short", False)
    assert notebook._bounded("short") == ("short", False)
