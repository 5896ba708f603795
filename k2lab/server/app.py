"""``K2LabApp``: the jupyter-server extension behind the side panel.

Enabled by ``pip install`` (the wheel ships ``etc/jupyter/jupyter_server_config.d/k2lab.json``).
Model settings come from ``c.K2Lab.*`` and ``K2LAB_*`` variables (``k2lab.config``); the extension's
own settings are ``c.K2LabApp.*``. The API key stays in this process: ``info`` says whether one is
set and where it came from, never what it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Unicode, default

from k2lab.config import K2Lab, Settings
from k2lab.events import event_from_dict
from k2lab.server.engine import RuntimeAgentFactory
from k2lab.server.handlers import api_handlers
from k2lab.server.sessions import Session, SessionError, SessionManager

DEMO_LABEL = "offline demo model (scripted)"


def _demo_prompts() -> dict[str, str]:
    from k2lab.providers.demo.scripts import DEMO_PROMPTS  # lazy: only the demo needs it

    return DEMO_PROMPTS


def key_help(s: Settings) -> str:
    if s.uses_demo_model:
        return (
            "No API key is set, so the offline demo model answers. To use Kimi K2 Thinking, set "
            "K2LAB_API_KEY (or MOONSHOT_API_KEY) in the environment that starts Jupyter, or "
            "c.K2Lab.api_key in jupyter_server_config.py, and restart the server. The key stays "
            "on the server; the browser never sees it."
        )
    where = s.sources.get("api_key", "none")
    if not s.api_key:
        return (
            f"No API key is set for {s.base_url}; requests go without one (fine for a local vLLM "
            "or SGLang). Set K2LAB_API_KEY in the server's environment if the endpoint needs one."
        )
    return f"An API key is set on the server (from {where}); the browser never sees it."


class K2LabApp(ExtensionApp):
    name = "k2lab"
    description = "k2lab side-panel API: chat sessions with a thinking model and its tool calls"
    load_other_extensions = True

    sessions_dir = Unicode(
        "",
        config=True,
        help="Where side-panel sessions are kept as JSONL files (default: "
        "$K2LAB_SESSIONS_DIR, else <jupyter data dir>/k2lab/sessions).",
    )
    notebook_timeout = Float(
        30.0, config=True, help="Seconds to wait for the panel to read or edit the notebook."
    )

    @default("sessions_dir")
    def _default_sessions_dir(self) -> str:
        return os.environ.get("K2LAB_SESSIONS_DIR") or str(
            Path(jupyter_data_dir()) / "k2lab" / "sessions"
        )

    def initialize_settings(self) -> None:
        self.k2config = K2Lab(parent=self)
        gw = getattr(self.serverapp, "gateway_config", None)  # --gateway-url / GatewayClient.url
        if gw is not None and getattr(gw, "url", None) and not self.k2config.gateway_url:
            self.k2config.gateway_url = gw.url
            self.k2config.gateway_token = self.k2config.gateway_token or gw.auth_token or ""
        kernel_manager = getattr(self.serverapp, "kernel_manager", None)
        self.factory = RuntimeAgentFactory(kernel_manager=kernel_manager)
        self.sessions = SessionManager(
            Path(self.sessions_dir).expanduser(),
            self.factory,
            self.k2config,
            notebook_timeout=self.notebook_timeout,
            root_dir=Path(getattr(self.serverapp, "root_dir", "") or ".").expanduser(),
        )
        n = self.sessions.load()
        try:
            s = self.sessions.server_settings()
            self.log.info(
                "k2lab: %d sessions in %s; model %s (%s); key %s",
                n,
                self.sessions.directory,
                DEMO_LABEL if s.uses_demo_model else s.model,
                s.base_url or "demo",
                s.sources.get("api_key"),
            )
        except ValueError as e:
            self.log.error("k2lab: the settings are invalid: %s", e)

    def initialize_handlers(self) -> None:
        self.handlers.extend(api_handlers())

    async def stop_extension(self) -> None:
        await self.sessions.close()

    # -- what handlers ask of the extension --------------------------------------------------------
    def info(self) -> dict[str, Any]:
        s = self.sessions.server_settings()
        return {
            "settings": s.public(),
            "model_label": DEMO_LABEL if s.uses_demo_model else s.model,
            "isolation": self.factory.last_isolation or s.isolation,
            "isolation_note": self.factory.last_isolation_note,
            "key_help": key_help(s),
            # the panel offers these as one-click suggestions while the demo model answers
            "demo_prompts": list(_demo_prompts().values()) if s.uses_demo_model else [],
        }

    async def replay(
        self, session: Session, call_id: str, run_id: str | None = None
    ) -> dict[str, Any]:
        """Run a past call again and compare the outputs (the call of that id in run
        ``run_id``, else its latest): ``python`` in the session's sandbox, an MCP call on the
        session's servers when the server marks the tool read-only (``readOnlyHint``)."""
        if call_id not in session.proposed_calls or (
            run_id is not None and not session.has_call(run_id, call_id)
        ):
            raise SessionError(404, f"no tool call {call_id!r} in this session")
        if session.running:
            raise SessionError(409, "a run is in progress; replay when it has ended")
        try:
            from k2lab.trace.replay import ReplayError, replay_call
        except ImportError as e:
            raise SessionError(501, f"replay is not available: {e}") from None
        built = await session.ensure_agent()
        if built.sandbox is None:
            raise SessionError(409, "this session has no sandbox to replay in")

        def parsed() -> list[Any]:  # read off the event loop; skip what this version cannot read
            out, run, runs = [], "", 0
            for e in session.log.slice(0):
                if e.get("type") == "run.start":
                    runs += 1
                    run = str(e.get("run_id") or f"#{runs}")
                if run_id is not None and run != run_id:
                    continue  # only the named run's events
                try:
                    out.append(event_from_dict(e))
                except (TypeError, ValueError):
                    continue
            return out

        events = await asyncio.to_thread(parsed)
        try:
            mcp = await session.ensure_mcp()
            tools: dict[str, Any] = {t.name: t for t in mcp.tools} if mcp is not None else {}
            result = await replay_call(
                events, call_id, built.sandbox, session.settings().tool_timeout, tools=tools
            )
        except (KeyError, ValueError, ReplayError) as e:
            raise SessionError(400, f"cannot replay {call_id!r}: {e}") from None
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            return dataclasses.asdict(result)
        return dict(vars(result))
