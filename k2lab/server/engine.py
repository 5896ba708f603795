"""How the server builds a session's agent: provider, sandbox (through the server's kernel
manager, so a gateway-configured server starts sandboxes remotely), tools, decisions.

Only this module knows how the pieces are made; ``sessions`` asks an ``AgentFactory`` for a
``BuiltAgent`` and closes it when the session goes away.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from k2lab.agent.decisions import DecisionSource
from k2lab.agent.loop import Agent
from k2lab.config import Settings
from k2lab.providers.base import ChatProvider
from k2lab.sandbox.base import Sandbox
from k2lab.tools.base import Tool

log = logging.getLogger(__name__)


@dataclass
class BuiltAgent:
    agent: Agent
    provider: ChatProvider
    sandbox: Sandbox | None

    async def aclose(self) -> None:
        try:
            await self.provider.aclose()
        finally:
            if self.sandbox is not None:
                await self.sandbox.shutdown()


class AgentFactory(Protocol):
    async def __call__(
        self, settings: Settings, decisions: DecisionSource, extra_tools: list[Tool]
    ) -> BuiltAgent: ...


class RuntimeAgentFactory:
    """The real thing: ``k2lab.runtime`` for provider and agent, ``SandboxKernel`` for code."""

    def __init__(self, kernel_manager: Any = None) -> None:
        self.kernel_manager = kernel_manager
        #: the isolation actually in force in the last sandbox started (for ``info``)
        self.last_isolation = ""
        self.last_isolation_note = ""

    async def open_sandbox(self, settings: Settings) -> Sandbox:
        from k2lab.sandbox.kernel import SandboxKernel

        if settings.gateway_url:  # --GatewayClient.url or c.K2Lab.gateway_url
            from k2lab.sandbox.gateway import open_gateway_sandbox

            sandbox: Sandbox = await open_gateway_sandbox(settings)
        else:
            sandbox = SandboxKernel(
                isolation=settings.isolation,
                network=settings.network,
                kernel_manager=self.kernel_manager,
                data=settings.data,  # the session's data paths, read-only at /data/NAME
            )
            await sandbox.start()
        self.last_isolation = sandbox.isolation
        self.last_isolation_note = str(getattr(sandbox, "isolation_note", ""))
        return sandbox

    async def __call__(
        self, settings: Settings, decisions: DecisionSource, extra_tools: list[Tool]
    ) -> BuiltAgent:
        from k2lab import runtime

        provider = runtime.open_provider(settings)
        try:
            sandbox = await self.open_sandbox(settings)
        except BaseException:
            await provider.aclose()
            raise
        try:
            agent = runtime.build_agent(
                settings, provider, sandbox, decisions, extra_tools=tuple(extra_tools)
            )
        except BaseException:
            await provider.aclose()
            await sandbox.shutdown()
            raise
        return BuiltAgent(agent=agent, provider=provider, sandbox=sandbox)
