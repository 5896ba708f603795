"""Known OpenAI-compatible endpoints serving Kimi K2 Thinking."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    base_url: str
    model: str
    key_env: str  # the provider's own key variable, used when K2LAB_API_KEY is not set
    note: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "moonshot",
            "https://api.moonshot.ai/v1",
            "kimi-k2-thinking",
            "MOONSHOT_API_KEY",
            "Moonshot's hosted API (also kimi-k2-thinking-turbo).",
        ),
        Preset(
            "moonshot-cn",
            "https://api.moonshot.cn/v1",
            "kimi-k2-thinking",
            "MOONSHOT_API_KEY",
            "Moonshot's hosted API in China.",
        ),
        Preset(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "moonshotai/kimi-k2-thinking",
            "OPENROUTER_API_KEY",
            "OpenRouter; reasoning arrives as `reasoning`.",
        ),
        Preset(
            "vllm",
            "http://localhost:8000/v1",
            "moonshotai/Kimi-K2-Thinking",
            "",
            "Self-hosted vLLM (--reasoning-parser kimi_k2 --tool-call-parser kimi_k2).",
        ),
        Preset(
            "sglang",
            "http://localhost:30000/v1",
            "moonshotai/Kimi-K2-Thinking",
            "",
            "Self-hosted SGLang (--reasoning-parser kimi_k2 --tool-call-parser kimi_k2).",
        ),
    )
}


#: Models that accept images in their messages (Kimi K2.5 and later, kimi-latest, Moonshot's
#: vision previews), by name as each endpoint spells it; K2 Thinking does not. Lower-cased
#: substrings of the model name. ``Settings.vision`` (``--vision``, ``c.K2Lab.vision``,
#: ``K2LAB_VISION``) overrides this for self-hosted models with other names.
VISION_MODELS = ("kimi-k2.5", "kimi-k2.6", "kimi-k2.7", "kimi-k3", "kimi-latest", "vision", "-vl")


def model_sees_images(model: str, override: str = "auto") -> bool:
    """Whether tool-result images go to ``model``: ``override`` "on"/"off" wins, else by name."""
    if override in ("on", "off"):
        return override == "on"
    name = model.lower()
    return "thinking" not in name.split("/")[-1] and any(v in name for v in VISION_MODELS)


def preset_for_url(base_url: str) -> Preset | None:
    for p in PRESETS.values():
        if base_url and base_url.rstrip("/") == p.base_url:
            return p
    return None


#: Published prices in USD per 1M tokens (input, cached input, output) of models on Moonshot's
#: international API (https://platform.moonshot.ai/docs/pricing, read for K2 Thinking at its
#: November 2025 launch: $0.60 / $0.15 / $2.50; turbo $1.15 / $0.15 / $8.00; the same figures are
#: listed for Moonshot's own endpoints by public model catalogues checked on 2026-12-03). They may
#: be stale: the faces show the cost as an estimate ("≈ $0.012") and show none where no price is
#: known (other endpoints, self-hosted models, api.moonshot.cn, which prices in CNY).
MOONSHOT_PRICES: dict[str, tuple[float, float, float]] = {
    "kimi-k2-thinking": (0.60, 0.15, 2.50),
    "kimi-k2-thinking-turbo": (1.15, 0.15, 8.00),
}


def prices_for(base_url: str, model: str) -> tuple[float, float, float] | None:
    """USD per 1M tokens (input, cached input, output) where known, else None."""
    if (base_url or "").rstrip("/") not in ("", PRESETS["moonshot"].base_url):
        return None
    return MOONSHOT_PRICES.get(model.lower())
