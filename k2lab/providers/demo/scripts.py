"""What the offline demo model says: the scripted demos, and an honest answer to everything else.

``DEMO_PROMPTS`` maps a short name to the exact prompt of each demo; faces (the notebook, the CLI's
``k2lab demo``) use these texts. Matching is forgiving (case-insensitive, "demo: estimate pi" or
"estimate pi" both work). Each demo is a function of the request's history (see ``turn.py``): it
decides the next step from the tool results it reads there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from k2lab.providers.demo import bugfix, checks, dataset, pi, yourdata
from k2lab.providers.demo.turn import Reply, Turn

DEMO_MODEL_LABEL = "offline demo model (scripted)"

DEMO_PROMPTS: dict[str, str] = {
    "estimate_pi": "demo: estimate pi with a Monte Carlo simulation and check it against math.pi",
    "analyze_dataset": "demo: analyze a small synthetic sales dataset and plot it",
    "fix_bug": "demo: fix a bug: compute the average order value per customer",
    "your_data": "demo: summarise my data",
}

_PLAYS: dict[str, Callable[[Turn], Reply]] = {
    "estimate_pi": pi.play,
    "analyze_dataset": dataset.play,
    "fix_bug": bugfix.play,
    "your_data": yourdata.play,
}

# keywords that pick a demo when the prompt is not one of the exact texts
_KEYWORDS: dict[str, tuple[str, ...]] = {
    # first: "analyze my data" is about the user's data, not the synthetic dataset
    "your_data": ("my data", "my dataframe", "my files", "my variables", "my table", "mcp"),
    "estimate_pi": ("estimate pi", "pi", "monte carlo"),
    "analyze_dataset": ("analyze", "analyse", "dataset", "data set", "sales", "plot"),
    "fix_bug": ("fix", "bug", "average order", "self-correct"),
}


def match_demo(prompt: str) -> str | None:
    """The demo a prompt asks for, or None."""
    p = " ".join(prompt.lower().replace("_", " ").split())
    for name, text in DEMO_PROMPTS.items():
        if p == text.lower() or p in (name.replace("_", " "), f"demo: {name.replace('_', ' ')}"):
            return name
    body = p[len("demo") :].lstrip(" :-") if p.startswith("demo") else None
    if body is None:
        # outside the "demo:" prefix only the demos' own phrases count
        phrases = {
            "estimate_pi": "estimate pi",
            "analyze_dataset": "analyze a",
            "fix_bug": "fix a bug",
            "your_data": "summarise my data",
        }
        if p.startswith("summarize my data"):
            return "your_data"
        return next((n for n, ph in phrases.items() if p.startswith(ph)), None)
    words = set(body.replace(":", " ").replace(",", " ").split())
    for name, keys in _KEYWORDS.items():
        if any((k in body) if " " in k else (k in words) for k in keys):
            return name
    return None


def reply_for(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Reply:
    """The next assistant message for this request."""
    turn = Turn(messages, tools)
    # test-time scaling's own requests: heavy mode's aggregation, the verify pass and its correction
    if checks.is_aggregation(turn.prompt):
        return checks.aggregate(turn)
    if checks.is_verify(turn.prompt):
        return checks.verify(turn, messages, tools)
    if checks.is_correction(turn.prompt):
        return checks.correct(turn, messages, tools)
    name = match_demo(turn.prompt)
    if name is None:
        return not_a_demo(turn.prompt)
    if not turn.has_python:
        return Turn.answer(
            "This demo needs a `python` tool, and the request offers none.",
            f"I am the {DEMO_MODEL_LABEL}. The '{name}' demo runs Python code, but this session "
            "offers no `python` tool, so I can't play it here.",
        )
    return _PLAYS[name](turn)


def not_a_demo(prompt: str) -> Reply:
    listing = "\n".join(f"- `{text}`" for text in DEMO_PROMPTS.values())
    return Turn.answer(
        "This prompt is not one of my scripted demos. I am not a real model, so the honest "
        "answer is to say so and explain how to connect one.",
        f"I am k2lab's **{DEMO_MODEL_LABEL}**, not Kimi K2 Thinking: no API key and no base URL "
        "are configured, so k2lab answered with its built-in scripted model. It can only play "
        "these demos:\n\n"
        f"{listing}\n\n"
        "To ask a real model:\n\n"
        "- Moonshot (Kimi K2 Thinking): `export K2LAB_API_KEY=sk-...` (or `MOONSHOT_API_KEY`), "
        "then run the same prompt again.\n"
        "- OpenRouter: `export OPENROUTER_API_KEY=...` and use the preset `openrouter` "
        "(`k2lab run --preset openrouter ...`, or `K2LAB_PRESET=openrouter`).\n"
        "- A self-hosted vLLM or SGLang server: "
        "`k2lab run --base-url http://HOST:8000/v1 --model moonshotai/Kimi-K2-Thinking ...` "
        "(or `K2LAB_BASE_URL` / `K2LAB_MODEL`; presets `vllm`, `sglang`).\n\n"
        "In Jupyter, set the same environment variables before starting JupyterLab, or "
        "`c.K2Lab.base_url` / `c.K2Lab.model` in `jupyter_server_config.py`.",
    )
