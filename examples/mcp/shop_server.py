"""A small MCP server for the examples: a shop's sales targets, over stdio.

Written with the official ``mcp`` SDK, like the servers a company already runs. k2lab starts it
from ``examples/mcp/servers.json`` (``%k2 --mcp-config``, ``k2lab run --mcp-config``, or
``c.K2Lab.mcp_config`` for the panel) and offers its tools to the model as ``mcp__shop__*``.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

TARGETS = {"North": 130.0, "South": 100.0, "East": 150.0, "West": 90.0}

server = MCPServer("k2lab-example-shop")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def sales_targets() -> str:
    """This quarter's daily sales target per region (read-only)."""
    return "\n".join(f"target_{region}={value}" for region, value in TARGETS.items())


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def region_target(region: str) -> str:
    """The daily sales target of one region."""
    if region not in TARGETS:
        raise ValueError(f"unknown region {region!r}; known: {', '.join(TARGETS)}")
    return f"target_{region}={TARGETS[region]}"


if __name__ == "__main__":
    server.run("stdio")
