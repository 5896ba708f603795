"""MCP tool servers through ``MCPToolSet``: real servers written with the SDK, over stdio and
Streamable HTTP, started and stopped by the tool set; failures become notices."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
from pathlib import Path
from typing import Any

import mcp_types as mt
import pytest
from jsonschema import SchemaError

from k2lab.tools.base import replayable, requires_approval, tool_schema
from k2lab.tools.mcp import (
    MAX_OUTPUT,
    MCPToolSet,
    convert_result,
    function_parameters,
    tool_name,
)
from k2lab.tools.mcp_config import parse_mcp_config
from k2lab.tools.registry import ToolRegistry
from tests.tools.conftest import CRASH_AT_START, HttpMCP, stdio_spec

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def config(servers: dict[str, Any]) -> Any:
    return parse_mcp_config({"mcpServers": servers})


class Notes:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, message: str, kind: str) -> None:
        assert kind == "mcp"
        self.messages.append(message)


async def call(reg: ToolRegistry, name: str, args: str = "{}") -> Any:
    checked = reg.check(name, args)
    assert not isinstance(checked, str), checked
    return await reg.call(*checked)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_stdio_tools_are_function_tools_with_their_schema(tmp_path: Path) -> None:
    async with MCPToolSet(config({"files": stdio_spec()}), timeout=30) as ts:
        names = [t.name for t in ts.tools]
        assert "mcp__files__add" in names and "mcp__files__write_note" in names
        reg = ToolRegistry(ts.tools)
        schemas = {s["function"]["name"]: s["function"] for s in reg.schemas()}
        add = schemas["mcp__files__add"]
        assert add["parameters"]["type"] == "object"
        assert set(add["parameters"]["properties"]) == {"a", "b"}
        assert add["parameters"]["required"] == ["a", "b"]
        assert "Add two integers." in add["description"] and "'files'" in add["description"]
        # a tool without arguments still gets "properties": {} (some providers require it)
        assert schemas["mcp__files__picture"]["parameters"]["properties"] == {}
        by = {t.name: t for t in ts.tools}
        # replayable only where the server says read-only
        assert replayable(by["mcp__files__add"]) and replayable(by["mcp__files__pid"])
        assert not replayable(by["mcp__files__write_note"])
        assert requires_approval(by["mcp__files__add"])  # approve defaults to the run's policy
        assert (
            tool_schema(by["mcp__files__add"])["function"]["parameters"]
            is by["mcp__files__add"].parameters
        )


async def test_results_text_image_resource_and_is_error() -> None:
    async with MCPToolSet(config({"s": stdio_spec()}), timeout=30) as ts:
        reg = ToolRegistry(ts.tools)
        out = await call(reg, "mcp__s__add", '{"a": 40, "b": 2}')
        assert out.ok and out.output == "42" and out.display == []

        pic = await call(reg, "mcp__s__picture")
        assert pic.ok and len(pic.display) == 1
        data = pic.display[0]["data"]
        assert base64.b64decode(data["image/png"]).startswith(b"\x89PNG")
        assert "[image/png output" in pic.output and "shown to the user" in pic.output
        # people see the image itself, not the model's note about it (issue 10)
        assert pic.people_output is not None and "shown to the user" not in pic.people_output
        assert pic.display[0]["metadata"]["k2lab"]["model_note"] in pic.output

        doc = await call(reg, "mcp__s__document")
        assert doc.ok and "the notes" in doc.output and "file:///notes.txt" in doc.output

        bad = await call(reg, "mcp__s__fail", '{"why": "testing"}')
        assert not bad.ok and "failed on purpose: testing" in bad.output


async def test_streamable_http_server_gets_the_configured_headers(http_mcp: HttpMCP) -> None:
    good = {"url": http_mcp.url, "headers": {"Authorization": f"Bearer {http_mcp.token}"}}
    wrong = {"url": http_mcp.url, "headers": {"Authorization": "Bearer not-the-token"}}
    notes = Notes()
    async with MCPToolSet(config({"web": good, "denied": wrong}), on_notice=notes) as ts:
        assert {t.server.name for t in ts.tools} == {"web"}
        (why,) = notes.messages
        assert "'denied' did not start" in why
        assert "not-the-token" not in why  # a header value is a secret, even in a notice
        reg = ToolRegistry(ts.tools)
        out = await call(reg, "mcp__web__add", '{"a": 1, "b": 2}')
        assert out.ok and out.output == "3"


async def test_servers_that_fail_to_start_are_notices_and_the_rest_works() -> None:
    notes = Notes()
    cfg = config(
        {
            "crashes": {"command": sys.executable, "args": [str(CRASH_AT_START)]},
            "missing": {"command": "/no/such/mcp-server"},
            "bad_cwd": {**stdio_spec(), "cwd": "/no/such/dir"},
            "good": stdio_spec(),
        }
    )
    async with MCPToolSet(cfg, timeout=30, on_notice=notes) as ts:
        assert {t.server.name for t in ts.tools} == {"good"}
        text = "\n".join(notes.messages)
        assert len(notes.messages) == 3, text
        # what the server said on stderr before it died is in the notice
        assert "'crashes' did not start" in text and "DATABASE_URL is not set" in text
        assert "'missing' did not start" in text and "/no/such/mcp-server" in text
        assert "'bad_cwd' did not start" in text
        assert ts.notices == notes.messages
        out = await call(ToolRegistry(ts.tools), "mcp__good__add", '{"a": 2, "b": 2}')
        assert out.output == "4"


async def test_a_server_that_dies_mid_run(tmp_path: Path) -> None:
    notes = Notes()
    cfg = config({"dies": stdio_spec(), "lives": stdio_spec()})
    async with MCPToolSet(cfg, timeout=30, on_notice=notes) as ts:
        reg = ToolRegistry(ts.tools)
        assert (await call(reg, "mcp__dies__add", '{"a": 1, "b": 1}')).output == "2"
        crashed = await call(reg, "mcp__dies__crash")
        assert not crashed.ok and "'dies' stopped" in crashed.output
        (notice,) = notes.messages
        assert "'dies' stopped" in notice and "other tools" in notice
        after = await call(reg, "mcp__dies__add", '{"a": 1, "b": 1}')
        assert not after.ok and "not running" in after.output
        assert len(notes.messages) == 1  # said once
        assert (await call(reg, "mcp__lives__add", '{"a": 3, "b": 4}')).output == "7"


async def test_a_hanging_tool_gets_the_tool_timeout_and_the_next_call_works() -> None:
    async with MCPToolSet(config({"slow": stdio_spec()}), timeout=2) as ts:
        reg = ToolRegistry(ts.tools)
        hung = await asyncio.wait_for(call(reg, "mcp__slow__hang"), 30)
        assert not hung.ok and "tool timeout (2 s)" in hung.output
        out = await asyncio.wait_for(call(reg, "mcp__slow__add", '{"a": 5, "b": 5}'), 30)
        assert out.ok and out.output == "10"


async def test_colliding_and_long_names_are_unique_and_valid() -> None:
    # "a.b" and "a_b" sanitise to the same prefix; --long-names adds a 73-character tool name and
    # one with a dot
    cfg = config(
        {
            "a.b": stdio_spec("--long-names", env={"MCP_SECRET": "first"}),
            "a_b": stdio_spec("--long-names", env={"MCP_SECRET": "second"}),
        }
    )
    async with MCPToolSet(cfg, timeout=30) as ts:
        names = [t.name for t in ts.tools]
        assert len(names) == len(set(names)) == 2 * (len(names) // 2)
        assert all(NAME.match(n) for n in names), names
        by = {(t.server.name, t.remote_name): t for t in ts.tools}
        assert by[("a.b", "whoami")].name == "mcp__a_b__whoami"
        other = by[("a_b", "whoami")].name
        assert other != "mcp__a_b__whoami" and other.startswith("mcp__a_b__whoami_")
        long = by[
            ("a.b", "a_tool_name_that_is_far_too_long_to_fit_in_sixty_four_characters_at_all")
        ]
        assert len(long.name) == 64
        assert by[("a_b", "dotted.name")].name.startswith("mcp__a_b__dotted_name")
        # each name reaches its own server
        reg = ToolRegistry(ts.tools)
        assert (await call(reg, by[("a.b", "whoami")].name)).output == "my secret is first"
        assert (await call(reg, other)).output == "my secret is second"
        assert (await call(reg, long.name)).output == "long one"
        assert (await call(reg, by[("a_b", "dotted.name")].name)).output == "dotted"


async def test_names_are_stable_across_runs() -> None:
    taken: set[str] = set()
    first = [tool_name("x", "t", taken), tool_name("x", "t", taken | {"mcp__x__t"})]
    assert first[0] == "mcp__x__t" and first[1] != first[0]
    assert tool_name("x", "t", {"mcp__x__t"}) == first[1]  # a hash, not a counter
    long = tool_name("s" * 40, "t" * 40, set())
    assert len(long) == 64 and NAME.match(long)
    assert tool_name("s" * 40, "t" * 40, set()) == long


async def test_servers_stop_with_the_set() -> None:
    async with MCPToolSet(config({"s": stdio_spec()}), timeout=30) as ts:
        pid = int((await call(ToolRegistry(ts.tools), "mcp__s__pid")).output)
        assert alive(pid)
    for _ in range(100):
        if not alive(pid):
            break
        await asyncio.sleep(0.05)
    assert not alive(pid)


async def test_servers_start_concurrently() -> None:
    """The servers start together, each in a task of its own. Checked by
    order, not wall time: every server is spawned before the first one has listed its tools."""
    cfg = config({f"s{i}": stdio_spec() for i in range(3)})
    ts = MCPToolSet(cfg, timeout=30)
    starts: list[str] = []
    from k2lab.tools import mcp as mcp_mod

    real = mcp_mod.MCPServerConnection._list

    async def spy(client: Any) -> list[Any]:
        starts.append("listed")
        return await real(client)

    orig_start = mcp_mod.MCPServerConnection.start

    async def start(self: Any) -> list[Any]:
        starts.append("start")
        return await orig_start(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(mcp_mod.MCPServerConnection, "_list", staticmethod(spy))
    mp.setattr(mcp_mod.MCPServerConnection, "start", start)
    try:
        async with ts:
            assert len({t.server.name for t in ts.tools}) == 3
    finally:
        mp.undo()
    assert starts[:3] == ["start"] * 3


def test_function_parameters_fixes_and_refuses() -> None:
    assert function_parameters({}) == {"type": "object", "properties": {}}
    assert function_parameters(None) == {"type": "object", "properties": {}}
    assert function_parameters({"type": "object"}) == {"type": "object", "properties": {}}
    kept = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    assert function_parameters(kept) == kept
    with pytest.raises(SchemaError):
        function_parameters({"type": "object", "properties": {"q": {"type": 12}}})


def test_convert_result_blocks() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    r = mt.CallToolResult(
        content=[
            mt.TextContent(type="text", text="first"),
            mt.ImageContent(type="image", data="!!not base64!!", mime_type="image/png"),
            mt.ImageContent(type="image", data=png, mime_type="image/tiff"),
            mt.AudioContent(type="audio", data=png, mime_type="audio/wav"),
            mt.EmbeddedResource(
                type="resource",
                resource=mt.BlobResourceContents(
                    uri="file:///x.bin", mime_type="application/zip", blob=png
                ),
            ),
            mt.EmbeddedResource(
                type="resource",
                resource=mt.BlobResourceContents(
                    uri="file:///p.png", mime_type="image/png", blob=png
                ),
            ),
            mt.ResourceLink(type="resource_link", name="report", uri="file:///report.pdf"),
        ]
    )
    out = convert_result(r)
    assert out.ok
    lines = out.output.splitlines()
    assert lines[0] == "first"
    assert "not valid base64" in lines[1] and "image/tiff" in lines[2] and "audio/wav" in lines[3]
    assert "application/zip" in lines[4] and "binary" in lines[4]
    assert "report" in lines[6] and "file:///report.pdf" in lines[6]
    assert [list(d["data"]) for d in out.display] == [["image/png", "text/plain"]]

    empty_error = convert_result(mt.CallToolResult(content=[], is_error=True))
    assert not empty_error.ok and "error" in empty_error.output
    structured = convert_result(mt.CallToolResult(content=[], structured_content={"n": 1}))
    assert structured.output == '{"n": 1}'
    huge = base64.b64encode(b"\x89PNG" + b"x" * 600_000).decode()
    two = convert_result(
        mt.CallToolResult(
            content=[mt.ImageContent(type="image", data=huge, mime_type="image/png")] * 2
        )
    )
    assert len(two.display) == 1 and "display limit" in two.output.splitlines()[1]
    big = convert_result(mt.CallToolResult(content=[mt.TextContent(type="text", text="x" * 10**6)]))
    assert big.truncated and len(big.output) < MAX_OUTPUT + 100


async def test_a_server_that_never_answers_gets_the_startup_timeout() -> None:
    notes = Notes()
    stuck = {"command": sys.executable, "args": [str(CRASH_AT_START.parent / "hang_at_start.py")]}
    cfg = config({"stuck": stuck, "good": stdio_spec()})
    async with MCPToolSet(cfg, timeout=30, startup_timeout=3, on_notice=notes) as ts:
        assert {t.server.name for t in ts.tools} == {"good"}
        (why,) = notes.messages
        assert "'stuck' did not start" in why and "within 3 s" in why
