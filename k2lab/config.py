"""Settings shared by the server extension, the magics and the CLI.

Resolution order, lowest to highest: built-in defaults, a provider preset, Jupyter config
(``c.K2Lab.model = ...``, via traitlets), environment variables (``K2LAB_MODEL`` ...), explicit
options (CLI flags, magic options, panel settings). ``Settings.sources`` records where each value
came from, for ``%k2 config``.

The API key is read from the environment (``K2LAB_API_KEY``, else ``MOONSHOT_API_KEY``, else the
preset's own variable such as ``OPENROUTER_API_KEY``) or Jupyter config, is held only by the
process that talks to the model, and is never part of ``Settings.public()``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from k2lab.providers.presets import PRESETS, preset_for_url

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
    tool_timeout: float = 60.0
    approve: str = "ask"  # ask | auto | never
    isolation: str = "auto"  # auto | bwrap | process
    network: bool = False  # may sandbox code reach the network?
    preset: str = ""
    api_key: str = field(default="", repr=False)
    sources: dict[str, str] = field(default_factory=dict, repr=False)

    def public(self) -> dict[str, Any]:
        """Everything but the key (a flag says whether one is set)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("api_key",)}
        d["api_key_set"] = bool(self.api_key)
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
    tool_timeout = Float(60.0, config=True, help="Seconds per tool call before interrupting.")
    approve = Unicode("ask", config=True, help="Approval policy: ask | auto | never.")
    isolation = Unicode("auto", config=True, help="Sandbox isolation: auto | bwrap | process.")
    network = Bool(False, config=True, help="Let sandbox code reach the network.")


_ENV = {
    "base_url": "K2LAB_BASE_URL",
    "model": "K2LAB_MODEL",
    "preset": "K2LAB_PRESET",
    "approve": "K2LAB_APPROVE",
    "isolation": "K2LAB_ISOLATION",
    "max_steps": "K2LAB_MAX_STEPS",
    "tool_timeout": "K2LAB_TOOL_TIMEOUT",
}


def _coerce(name: str, value: Any) -> Any:
    kind = type(getattr(Settings(), name))
    if kind is bool and isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return kind(value)


def resolve_settings(
    overrides: dict[str, Any] | None = None,
    config: K2Lab | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
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
            if name in ("api_key", "preset"):
                continue
            put(name, value, source)

    key, key_source = "", "none"
    if config is not None and config.api_key:
        key, key_source = config.api_key, "jupyter config"
    # K2LAB_API_KEY always wins; then the endpoint's own variable (so a Moonshot key is never
    # sent to OpenRouter); MOONSHOT_API_KEY only for Moonshot or the default endpoint.
    preset = PRESETS.get(s.preset) or preset_for_url(s.base_url)
    own_var = preset.key_env if preset is not None else ""
    candidates = ["K2LAB_API_KEY"]
    if own_var:
        candidates.append(own_var)
    if not s.base_url or own_var == "MOONSHOT_API_KEY":
        candidates.append("MOONSHOT_API_KEY")
    for var in candidates:
        if env.get(var):
            key, key_source = env[var], f"${var}"
            break
    s.api_key = key
    s.sources["api_key"] = key_source
    if s.approve not in ("ask", "auto", "never"):
        raise ValueError(f"unknown approval policy {s.approve!r} (use ask, auto or never)")
    return s
