"""How every face builds an agent: provider, sandbox and tools from ``Settings``.

The CLI, the magics and the server call these three functions and nothing else, so "no key and no
base URL means the offline demo model" and "budgets come from settings" hold everywhere the same.
The demo model server is process-wide: started on first use, reused by every later provider (a
Jupyter server with many sessions runs one), and left to die with the process (daemon thread).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from k2lab.agent.decisions import DecisionSource
from k2lab.agent.loop import Agent, Budgets
from k2lab.config import DEFAULT_BASE_URL, Settings
from k2lab.providers.base import ChatProvider
from k2lab.providers.demo import DEMO_MODEL_LABEL, DemoServer, start_demo_server
from k2lab.providers.presets import model_sees_images
from k2lab.sandbox.base import Sandbox
from k2lab.tools.base import Tool
from k2lab.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from k2lab.agent.heavy import LaneSetup

_demo_lock = threading.Lock()
_demo: DemoServer | None = None


def demo_server() -> DemoServer:
    """The process-wide offline demo model server (started on first use)."""
    global _demo
    with _demo_lock:
        if _demo is None:
            _demo = start_demo_server()
        return _demo


def open_provider(settings: Settings) -> ChatProvider:
    """The model ``settings`` name; the offline demo model when there is no key and no base URL."""
    from k2lab.providers.openai_compat import OpenAICompatProvider

    if settings.uses_demo_model:
        return OpenAICompatProvider(
            base_url=demo_server().base_url,
            api_key="",  # the demo needs none; never send a real key to it
            model=settings.model,
            model_label=DEMO_MODEL_LABEL,
            demo=True,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            vision=settings.vision == "on",  # the demo model: only when asked
        )
    return OpenAICompatProvider(
        base_url=settings.base_url or DEFAULT_BASE_URL,
        api_key=settings.api_key,
        model=settings.model,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        vision=model_sees_images(settings.model, settings.vision),
    )


async def open_sandbox(settings: Settings, *, workspace: Path | None = None) -> Sandbox:
    """A started sandbox kernel with the isolation and network policy of ``settings``."""
    from k2lab.sandbox.kernel import SandboxKernel

    if settings.gateway_url:  # a Jupyter gateway (GATEWAY): the kernel image's isolation
        from k2lab.sandbox.gateway import open_gateway_sandbox

        return await open_gateway_sandbox(settings)

    sandbox = SandboxKernel(
        isolation=settings.isolation,
        network=settings.network,
        workspace=workspace,
        data=settings.data,
    )
    await sandbox.start()
    return sandbox


def build_agent(
    settings: Settings,
    provider: ChatProvider,
    sandbox: Sandbox,
    decisions: DecisionSource,
    *,
    extra_tools: Iterable[Tool] = (),
    notes: Iterable[str] = (),
) -> Agent:
    """An agent with the ``python`` tool over ``sandbox`` (plus ``extra_tools``) and the budgets;
    ``notes`` (e.g. the ``--with`` variables) join the system prompt after the data note."""
    from k2lab.tools.python import PythonTool

    python = cast(Tool, PythonTool(sandbox, timeout=settings.tool_timeout))
    tools = ToolRegistry([python, *extra_tools])
    budgets = Budgets(
        max_steps=settings.max_steps,
        wall_time=settings.wall_time or None,
        max_total_tokens=settings.max_total_tokens or None,
        context_window=settings.context_window,
        compact_at=settings.context_share,
        summarise=settings.summarise_context,
    )
    # the user's --data paths and --with variables: where the model finds them
    note_of = getattr(sandbox, "data_note_for_model", None)
    note = "\n\n".join(n for n in [note_of() if callable(note_of) else "", *notes] if n)
    system_prompt = None
    if note:
        from k2lab.agent.loop import default_system_prompt

        system_prompt = default_system_prompt() + "\n\n" + note
    return Agent(
        provider,
        tools,
        decisions,
        budgets=budgets,
        isolation=sandbox.isolation,
        system_prompt=system_prompt,
    )


def lane_factory(
    settings: Settings,
    provider: ChatProvider,
    decisions: DecisionSource,
    *,
    extra_tools: Iterable[Tool] = (),
) -> Callable[[str], Awaitable[LaneSetup]]:
    """Heavy mode's ``make_lane`` for ``settings``: each lane an agent of its own over its own
    sandbox (fresh workspace, the same ``data`` paths), started while the lane's first model
    request streams."""
    from k2lab.agent.heavy import LaneSetup, LateSandbox
    from k2lab.sandbox.isolation import resolve_level
    from k2lab.sandbox.kernel import SandboxKernel

    expected, _why = resolve_level(settings.isolation)
    tools = list(extra_tools)

    if settings.gateway_url:  # every lane its own kernel on the gateway (GATEWAY)
        expected = "remote"

    async def make(name: str) -> LaneSetup:
        kernel: Sandbox
        if settings.gateway_url:
            from k2lab.sandbox.gateway import GatewaySandbox

            kernel = GatewaySandbox(settings.gateway_url, token=settings.gateway_token)
        else:
            sk = SandboxKernel(
                isolation=settings.isolation, network=settings.network, data=settings.data
            )
            # the level the start will find, so the data note (built before the start) names
            # the paths the code reads (the /data mounts under bwrap)
            sk.isolation = expected
            kernel = sk
        late = LateSandbox(kernel, expected_isolation=expected)
        agent = build_agent(settings, provider, cast(Sandbox, late), decisions, extra_tools=tools)
        return LaneSetup(
            agent=agent, start=late.start, close=late.shutdown, data_note=late.data_note_for_model()
        )

    return make
