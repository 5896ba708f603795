"""The ``python`` tool: the model's code runs in the sandbox kernel, state kept between calls."""

from __future__ import annotations

from pydantic import BaseModel, Field

from k2lab.sandbox.base import Sandbox
from k2lab.tools.base import ToolOutput, people_text


class PythonParams(BaseModel):
    code: str = Field(
        description=(
            "Python source to run. Variables, imports and files persist between calls; the "
            "value of the last expression is shown, like a notebook cell."
        )
    )


_DESCRIPTION = (
    "Run Python code in a sandboxed Jupyter kernel (IPython: magics and `!shell` work). State "
    "persists across calls until the kernel is restarted. Output is truncated to its head and "
    "tail when long; plots and HTML are shown to the user and summarised for you. Each call has "
    "a time limit of {timeout:g} s. The working directory is the session's workspace; {net}."
)


class PythonTool:
    name = "python"
    params = PythonParams
    #: a trace's python calls can run again in a fresh sandbox (``k2lab replay``)
    replayable = True

    def __init__(self, sandbox: Sandbox, *, timeout: float = 60.0) -> None:
        self.sandbox = sandbox
        self.timeout = timeout
        network = getattr(sandbox, "network", None)
        net = (
            "there is no network access"
            if network is False and sandbox.isolation != "process"
            else "network access may be available"
        )
        self.description = _DESCRIPTION.format(timeout=timeout, net=net)

    async def call(self, args: BaseModel) -> ToolOutput:
        assert isinstance(args, PythonParams)
        r = await self.sandbox.execute(args.code, timeout=self.timeout)
        text = r.text if r.text.strip() else "(no output)"
        return ToolOutput(
            ok=r.ok,
            output=text,
            display=r.display,
            truncated=r.truncated,
            people_output=people_text(text, r.display),
        )
