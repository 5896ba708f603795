"""Settings shared by the server extension, the magics and the CLI.

Resolution order, lowest to highest: built-in defaults, a provider preset, Jupyter config
(``c.K2Lab.model = ...``, via traitlets), environment variables (``K2LAB_MODEL`` ...), explicit
options (CLI flags, magic options, panel settings). ``Settings.sources`` records where each value
came from, for ``%k2 config``.

The API key is read from the environment (``K2LAB_API_KEY``, the provider's own variable such as
``MOONSHOT_API_KEY`` or ``OPENROUTER_API_KEY``) or Jupyter config, is held only by the process that
talks to the model, and is never part of ``Settings.public()``.

The key rule (``resolve_key``, the one place every face gets its key from): a key is sent only to
the endpoint it belongs to.

- ``K2LAB_API_KEY`` and ``c.K2Lab.api_key`` belong to the *configured* endpoint: the one set by
  ``K2LAB_BASE_URL`` / ``K2LAB_PRESET`` / ``c.K2Lab.base_url`` / ``c.K2Lab.preset`` (Moonshot when
  none is). An explicit option (a CLI flag, a magic option, a panel session's settings) that names
  another endpoint gets no key, unless that endpoint is listed in ``c.K2Lab.allowed_key_endpoints``
  or ``K2LAB_ALLOWED_KEY_ENDPOINTS`` (comma-separated), which only an administrator / the user's
  own environment can set.
- A provider's own variable goes only to that provider: ``MOONSHOT_API_KEY`` to api.moonshot.ai /
  api.moonshot.cn, ``OPENROUTER_API_KEY`` to openrouter.ai, wherever that endpoint is named from.

Endpoints compare by scheme, host, port and path (no user info, query, or trailing slash).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, Float, Int, List, Unicode
from traitlets.config import Configurable

from k2lab.providers.presets import PRESETS

DEFAULT_BASE_URL = "https://api.moonshot.ai/v1"
DEFAULT_MODEL = "kimi-k2-thinking"


@dataclass
class Settings:
    base_url: str = ""  # "" = offline demo model when no key is set, else Moonshot
    model: str = DEFAULT_MODEL
    temperature: float = 1.0
    max_tokens: int = 32_768  # per request; K2 needs an explicit budget
    max_steps: int = 300
    wall_time: float = 0.0  # seconds for a whole run, 0 = unlimited
    max_total_tokens: int = 0  # completion tokens for a whole run, 0 = unlimited
    context_window: int = 262_144
    #: the share of context_window at which earlier tool outputs are hidden from the model
    context_share: float = 0.85
    #: when hiding is not enough, summarise the older messages once (``k2lab.agent.summarise``)
    summarise_context: bool = False
    tool_timeout: float = 60.0
    approve: str = "ask"  # ask | auto | never
    isolation: str = "auto"  # auto | bwrap | process
    network: bool = False  # may sandbox code reach the network?
    #: ``--data`` paths made visible read-only inside the sandbox (at /data/NAME under bwrap)
    data: tuple[str, ...] = ()
    gateway_url: str = ""  # a Jupyter gateway: sandboxes start there (k2lab.sandbox.gateway)
    #: an MCP servers file (``k2lab.tools.mcp_config``): panel sessions start its servers
    mcp_config: str = ""
    #: auto | on | off: do tool-result images go to the model? (auto: by model name)
    vision: str = "auto"
    gateway_token: str = field(default="", repr=False)
    preset: str = ""
    api_key: str = field(default="", repr=False)
    sources: dict[str, str] = field(default_factory=dict, repr=False)

    def public(self) -> dict[str, Any]:
        """Everything but the key (a flag says whether one is set)."""
        d = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("api_key", "gateway_token")
        }
        d["api_key_set"] = bool(self.api_key)
        d["gateway_token_set"] = bool(self.gateway_token)
        d["uses_demo_model"] = self.uses_demo_model
        return d

    @property
    def uses_demo_model(self) -> bool:
        return not self.api_key and not self.base_url


class K2Lab(Configurable):
    """Jupyter config: ``c.K2Lab.<name>`` in jupyter_server_config.py or ipython_config.py."""

    base_url = Unicode("", config=True, help="OpenAI-compatible base URL ('' = Moonshot/demo).")
    model = Unicode(DEFAULT_MODEL, config=True, help="Model name.")
    preset = Unicode("", config=True, help="moonshot | moonshot-cn | openrouter | vllm | sglang")
    api_key = Unicode("", config=True, help="API key (prefer the K2LAB_API_KEY variable).")
    temperature = Float(1.0, config=True, help="Sampling temperature (K2 was evaluated at 1.0).")
    max_tokens = Int(32_768, config=True, help="max_tokens per model request.")
    max_steps = Int(300, config=True, help="Most model steps in one run.")
    wall_time = Float(0.0, config=True, help="Seconds for a whole run (0 = unlimited).")
    max_total_tokens = Int(0, config=True, help="Completion tokens per run (0 = unlimited).")
    context_window = Int(262_144, config=True, help="The model's context window in tokens.")
    context_share = Float(
        0.85,
        config=True,
        help="Share of the context window (0.1-0.99) at which earlier tool outputs are hidden "
        "from the model (also $K2LAB_CONTEXT_SHARE).",
    )
    summarise_context = Bool(
        False,
        config=True,
        help="When a request still passes context_share after earlier tool outputs were hidden, "
        "summarise the older messages in one model call and send the summary instead (also "
        "$K2LAB_SUMMARISE_CONTEXT=1).",
    )
    tool_timeout = Float(60.0, config=True, help="Seconds per tool call before interrupting.")
    approve = Unicode("ask", config=True, help="Approval policy: ask | auto | never.")
    isolation = Unicode("auto", config=True, help="Sandbox isolation: auto | bwrap | process.")
    network = Bool(False, config=True, help="Let sandbox code reach the network.")
    gateway_url = Unicode("", config=True, help="Jupyter gateway URL: sandboxes start there.")
    mcp_config = Unicode(
        "",
        config=True,
        help="MCP servers file ({'mcpServers': ...}); each panel session starts its servers and "
        "offers their tools (also $K2LAB_MCP_CONFIG).",
    )
    vision = Unicode(
        "auto",
        config=True,
        help="Send plots and images of tool results to the model: auto (by model name: Kimi "
        "K2.5 and vision models yes, K2 Thinking no) | on | off (also $K2LAB_VISION).",
    )
    gateway_token = Unicode("", config=True, help="Token of gateway_url (prefer the variable).")
    allowed_key_endpoints = List(
        Unicode(),
        [],
        config=True,
        help="Base URLs besides the configured one that may receive the configured key "
        "(K2LAB_API_KEY / c.K2Lab.api_key) when a session or option names them.",
    )


_ENV = {
    "base_url": "K2LAB_BASE_URL",
    "model": "K2LAB_MODEL",
    "preset": "K2LAB_PRESET",
    "approve": "K2LAB_APPROVE",
    "isolation": "K2LAB_ISOLATION",
    "max_steps": "K2LAB_MAX_STEPS",
    "tool_timeout": "K2LAB_TOOL_TIMEOUT",
    "mcp_config": "K2LAB_MCP_CONFIG",
    "vision": "K2LAB_VISION",
    "context_share": "K2LAB_CONTEXT_SHARE",
    "summarise_context": "K2LAB_SUMMARISE_CONTEXT",
    "gateway_url": "JUPYTER_GATEWAY_URL",
    "gateway_token": "JUPYTER_GATEWAY_AUTH_TOKEN",
}


def _coerce(name: str, value: Any) -> Any:
    kind = type(getattr(Settings(), name))
    if kind is bool and isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return kind(value)


def _configured_gateway(config: K2Lab | None, env: Any) -> str:
    url = (config.gateway_url if config is not None else "") or env.get("JUPYTER_GATEWAY_URL", "")
    return str(url).strip().rstrip("/")


def resolve_settings(
    overrides: dict[str, Any] | None = None,
    config: K2Lab | None = None,
    environ: dict[str, str] | None = None,
    *,
    options_are_the_owners: bool = False,
) -> Settings:
    """Settings from defaults, preset, Jupyter config, environment and ``overrides`` (options).

    ``options_are_the_owners``: the options come from whoever owns the environment's keys (the
    CLI's own command line), so an endpoint they name is a configured one and gets
    ``$K2LAB_API_KEY``. Options from a notebook cell or a panel session are not: a key goes to
    the endpoints configured or allowed for it only (see ``resolve_key``).
    """
    env = os.environ if environ is None else environ
    s = Settings()
    s.sources = {f.name: "default" for f in fields(Settings) if f.name != "sources"}

    def put(name: str, value: Any, source: str) -> None:
        setattr(s, name, _coerce(name, value))
        s.sources[name] = source

    layers: list[tuple[str, dict[str, Any]]] = []
    if config is not None:
        changed = {
            n: getattr(config, n)
            for n in config.trait_names(config=True)
            if getattr(config, n) != config.trait_defaults(n)
        }
        layers.append(("jupyter config", changed))
    layers.append(("environment", {k: env[v] for k, v in _ENV.items() if env.get(v)}))
    layers.append(("option", {k: v for k, v in (overrides or {}).items() if v is not None}))

    # the preset first (it sets base_url/model defaults), then everything else on top
    preset_name = ""
    for _, layer in layers:
        preset_name = layer.get("preset") or preset_name
    if preset_name:
        if preset_name not in PRESETS:
            raise ValueError(f"unknown preset {preset_name!r}; known: {', '.join(PRESETS)}")
        p = PRESETS[preset_name]
        put("preset", preset_name, "preset")
        put("base_url", p.base_url, f"preset {preset_name}")
        put("model", p.model, f"preset {preset_name}")
    for source, layer in layers:
        for name, value in layer.items():
            if name in ("api_key", "preset", "allowed_key_endpoints"):
                continue
            put(name, value, source)

    named = any(v is not None for v in (overrides or {}).values())
    trusted = options_are_the_owners or not named
    # like the key rule: a gateway a cell names does not get the configured gateway's token
    if (
        not trusted
        and s.sources["gateway_url"] == "option"
        and s.sources["gateway_token"] != "option"
        and s.gateway_url.rstrip("/") != _configured_gateway(config, env)
    ):
        s.gateway_token, s.sources["gateway_token"] = "", "withheld"
    configured = s.base_url if trusted else _configured_base_url(config, env)
    allowed = list(config.allowed_key_endpoints) if config is not None else []
    allowed += [u for u in env.get("K2LAB_ALLOWED_KEY_ENDPOINTS", "").replace(",", " ").split()]
    s.api_key, s.sources["api_key"] = resolve_key(
        s.base_url,
        configured=configured,
        config_key=config.api_key if config is not None else "",
        environ=env,
        allowed=allowed,
    )
    if s.approve not in ("ask", "auto", "never"):
        raise ValueError(f"unknown approval policy {s.approve!r} (use ask, auto or never)")
    if s.vision not in ("auto", "on", "off"):
        raise ValueError(f"unknown vision setting {s.vision!r} (use auto, on or off)")
    if not 0.1 <= s.context_share <= 0.99:
        raise ValueError(
            f"context_share {s.context_share!r} is outside 0.1-0.99 (the share of the context "
            "window at which earlier tool outputs are hidden)"
        )
    return s


def _configured_base_url(config: K2Lab | None, env: dict[str, str] | os._Environ[str]) -> str:
    """The endpoint the configuration (not an option) names: what the configured key is for."""
    return resolve_settings(None, config=config, environ=dict(env)).base_url


def endpoint(url: str) -> str:
    """A base URL as the key rule compares it (``""`` is Moonshot's default endpoint)."""
    u = urlsplit(url or DEFAULT_BASE_URL)
    scheme = u.scheme.lower()
    try:
        port = u.port or {"http": 80, "https": 443}.get(scheme, 0)
    except ValueError:
        return url
    return f"{scheme}://{(u.hostname or '').lower()}:{port}{u.path.rstrip('/')}"


def resolve_key(
    base_url: str,
    *,
    configured: str,
    config_key: str = "",
    environ: dict[str, str] | os._Environ[str] | None = None,
    allowed: list[str] | tuple[str, ...] = (),
) -> tuple[str, str]:
    """The key for ``base_url`` and where it came from (the module's key rule).

    ``configured`` is the endpoint the configuration names (``K2LAB_BASE_URL``, presets, Jupyter
    config, not options); ``allowed`` lists further endpoints the configured key may go to.
    """
    env = os.environ if environ is None else environ
    target = endpoint(base_url)
    generic_ok = target in {endpoint(configured), *(endpoint(u) for u in allowed)}
    own = [p.key_env for p in PRESETS.values() if p.key_env and endpoint(p.base_url) == target]
    candidates: list[tuple[str, str]] = []
    if env.get("K2LAB_API_KEY"):
        candidates.append(("$K2LAB_API_KEY", env["K2LAB_API_KEY"]))
    for var in dict.fromkeys(own):
        if env.get(var):
            candidates.append((f"${var}", env[var]))
    if config_key:
        candidates.append(("jupyter config", config_key))
    withheld = ""
    for source, key in candidates:
        if source in ("$K2LAB_API_KEY", "jupyter config") and not generic_ok:
            withheld = withheld or source
            continue
        return key, source
    if withheld:
        return "", (
            f"withheld: the key from {withheld} belongs to {configured or DEFAULT_BASE_URL}, not "
            f"to {base_url}; an administrator can allow that endpoint with "
            "c.K2Lab.allowed_key_endpoints (or $K2LAB_ALLOWED_KEY_ENDPOINTS)"
        )
    return "", "none"
