"""Static renderings of a run (HTML without script, and Markdown) from a ``TraceState`` snapshot.

These are the ``text/html`` and ``text/markdown`` fallbacks of the saved trace, so they must read
well where no JavaScript runs and styles may be stripped (GitHub): structure comes from plain
elements (``details``/``summary``, ``pre``, headings), and the scoped ``<style>`` only polishes it
where allowed (JupyterLab, nbviewer). Everything from the model or the sandbox is escaped; HTML that
sandbox code displayed goes into an ``<iframe sandbox>`` (no script, no same-origin), never into the
page. Class names are the contract documented in ``k2lab/notebook/static/README.md``.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from k2lab.trace.remote import (
    CSP_META,
    image_placeholder,
    is_inline,
    remote_link,
    safe_output_html,
)
from k2lab.trace.view import budget_stop_text, context_gauge, cost_text

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: Outputs longer than this many lines are collapsed behind a <details>.
COLLAPSE_LINES = 25
_md = MarkdownIt("commonmark", {"html": False}).enable("table")
# finds what a Markdown viewer would load or render as HTML (see markdown_safe)
_md_probe = MarkdownIt("commonmark", {"html": True}).enable("table")


def _image_rule(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """A Markdown image: inline if a ``data:`` URL, else a placeholder (no fetch on its own)."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    if is_inline(src):
        return str(self.image(tokens, idx, options, env))
    return image_placeholder(src, self.renderInlineAsText(token.children or [], options, env))


_md.add_render_rule("image", _image_rule)


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def markdown_html(text: str) -> str:
    """Markdown to HTML with raw HTML disabled (the model's text cannot inject markup)."""
    return str(_md.render(text))


@lru_cache(maxsize=512)
def highlight_python(code: str) -> str:
    """Syntax-highlighted HTML (pygments classes, no wrapper) for a code block."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    html_code: str = highlight(code, PythonLexer(), HtmlFormatter(nowrap=True))
    return html_code.rstrip("\n")


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def status_line(head: dict[str, Any], n_steps: int) -> str:
    """The run's one-line summary. A queued run (no run.start yet) has no step budget, model or
    isolation: those parts are left out rather than shown as "0/0" and "?"."""
    unstarted = not head.get("max_steps") and not (head.get("model_label") or head.get("model"))
    if head.get("status") == "waiting" or unstarted:
        return "queued: starts when the run before it ends"
    label = head.get("model_label") or head.get("model") or ""
    calls = int(head.get("tool_calls") or 0)
    if head.get("heavy"):  # lanes have steps of their own (the lane rows show them)
        where = "aggregating" if head.get("aggregating") else "lanes running"
        if head.get("status") == "ended":
            where = "aggregated"
        step = f"heavy: {head.get('lanes_note') or where}" + (
            f" · {where}" if head.get("lanes_note") and head.get("status") != "ended" else ""
        )
    else:
        step = f"step {head.get('step', 0)}/{head.get('max_steps') or '?'}"
    budgets = head.get("budgets") or {}
    cap = budgets.get("max_total_tokens")
    out = f"{head.get('completion_tokens', 0)}" + (f"/{cap}" if cap else "")
    wall = budgets.get("wall_time")
    elapsed = fmt_seconds(head.get("elapsed") or 0.0)
    per_request = budgets.get("max_tokens")
    parts = [
        step,
        _count(calls, "tool call"),
        f"{head.get('prompt_tokens', 0)} in / {out} out tokens"
        + (f" (max {per_request}/request)" if per_request else ""),
        cost_text(head, budgets.get("prices")),
        ""
        if head.get("heavy")
        else context_gauge(
            int(head.get("last_prompt_tokens") or 0), int(budgets.get("context_window") or 0)
        ),
        f"{elapsed} of {fmt_seconds(wall)}" if wall else elapsed,
        f"isolation: {head['isolation']}" if head.get("isolation") else "",
        f"model: {label}" if label else "",
    ]
    if head.get("status") == "ended":
        reason = budget_stop_text(head.get("stop_reason"), budgets, int(head.get("max_steps") or 0))
        parts.insert(0, f"ended: {reason}")
    return " · ".join(p for p in parts if p)


def _output_html(text: str, cls: str) -> str:
    text = strip_ansi(text)
    body = f'<pre class="{cls}">{esc(text)}</pre>'
    n = text.count("\n") + 1
    if n > COLLAPSE_LINES:
        head = "\n".join(text.splitlines()[:8])
        return (
            f'<pre class="{cls}">{esc(head)}</pre><details class="k2lab-more">'
            f"<summary>show all {n} lines</summary>{body}</details>"
        )
    return body


@lru_cache(maxsize=8)  # the live view re-sends a card's pieces; a 1 MB output takes ~0.7 s
def html_output(source: str) -> str:
    """An HTML output of sandbox code: in an ``<iframe sandbox>`` (no scripts, no access to the
    page or its cookies) where nothing loads from outside: remote references are removed (see
    ``remote.py``) and a CSP blocks everything but ``data:`` in case one got through."""
    safe, images, others = safe_output_html(source)
    frame = f'<iframe class="k2lab-html" sandbox="" srcdoc="{esc(CSP_META + safe)}"></iframe>'
    return frame + remote_note(images, others)


#: The tag under an image that also went to the model (``tool.result.sent_to_model``).
SENT_TAG = (
    '<span class="k2lab-sent-tag" title="This image was also sent to the model, which can '
    'see it">sent to the model</span>'
)


def display_html(item: dict[str, Any], *, sent: bool = False) -> str:
    """One rich output of sandbox code (a Jupyter mime bundle), safely; ``sent``: the image
    also went to the model (tagged so)."""
    data = item.get("data") or {}
    for mime in ("image/png", "image/jpeg", "image/gif", "image/webp"):
        if isinstance(data.get(mime), str):
            src = f"data:{mime};base64,{data[mime].strip()}"
            img = f'<img class="k2lab-image" alt="output image" src="{esc(src)}">'
            return img + SENT_TAG if sent else img
    if isinstance(data.get("image/svg+xml"), str):
        import base64

        b64 = base64.b64encode(data["image/svg+xml"].encode()).decode()
        return f'<img class="k2lab-image" alt="output image" src="data:image/svg+xml;base64,{b64}">'
    if isinstance(data.get("text/html"), str):
        return html_output(data["text/html"])
    if isinstance(data.get("text/markdown"), str):
        return f'<div class="k2lab-markdown">{markdown_html(data["text/markdown"])}</div>'
    if "text/plain" in data:
        return _output_html(str(data["text/plain"]), "k2lab-stdout")
    return ""


#: At most this many remote URLs are listed under an HTML output.
REMOTE_LISTED = 10


def remote_note(images: list[str], others: list[str]) -> str:
    """Under an HTML output that referred to remote content: what was not loaded, as links."""
    urls = list(dict.fromkeys(images + others))
    if not urls:
        return ""
    links = ", ".join(
        remote_link(u, u if len(u) <= 120 else u[:117] + "...") for u in urls[:REMOTE_LISTED]
    )
    more = f" and {len(urls) - REMOTE_LISTED} more" if len(urls) > REMOTE_LISTED else ""
    return (
        f'<div class="k2lab-remote-note" data-k2lab-images="{len(images)}">'
        f"Not loaded from outside: {links}{more}</div>"
    )


def markdown_safe(text: str) -> str:
    """Model text for a Markdown fallback: as is, unless a viewer would load an image or render
    raw HTML from it (GitHub does both); then as a fenced block, which it shows as text."""

    def risky(tokens: Any) -> bool:
        return any(
            t.type in ("image", "html_inline", "html_block") or risky(t.children or [])
            for t in tokens
        )

    return _fence(text, "text") if risky(_md_probe.parse(text)) else text


def lane_state(lane: dict[str, Any]) -> str:
    """A lane's one-word state: finished, its stop reason, waiting for you, or running."""
    if lane["status"] == "ended":
        return "finished" if lane["stop_reason"] == "completed" else str(lane["stop_reason"])
    return "waiting for you" if lane.get("waiting") else "running"


def lane_line(lane: dict[str, Any]) -> str:
    tokens = lane.get("prompt_tokens", 0) + lane.get("completion_tokens", 0)
    return (
        f"Lane {lane['lane']} · {lane_state(lane)} · step {lane.get('step', 0)} · "
        f"{_count(int(lane.get('n_calls') or 0), 'tool call')} · {tokens} tokens"
    )


def _lanes_html(lanes: list[dict[str, Any]]) -> str:
    out = ['<div class="k2lab-runlanes"><strong>Lanes</strong><div class="k2lab-runlane-row">']
    for ln in lanes:
        out.append(
            f'<details class="k2lab-runlane k2lab-runlane-{esc(ln["status"])}" '
            f'data-lane="{esc(ln["lane"])}">'
            f'<summary class="k2lab-runlane-head">{esc(lane_line(ln))}</summary>'
        )
        for st in ln["steps"]:
            if st["reasoning"]:
                out.append(
                    f'<details class="k2lab-reasoning"><summary>Step {st["step"]} · reasoning'
                    f"</summary><pre>{esc(st['reasoning'])}</pre></details>"
                )
            for c in st["calls"]:
                label = esc(c["label"])
                out.append(
                    f'<div class="k2lab-call k2lab-status-{esc(c["status"])}">'
                    f'<div class="k2lab-call-head">Tool call <code>{esc(c["name"])}</code> · '
                    f'{label}</div><pre class="k2lab-code k2lab-hl">{highlight_python(c["code"])}'
                    "</pre>"
                )
                if c.get("output"):
                    out.append(_output_html(c["output"], "k2lab-stdout"))
                out.append("</div>")
        if ln.get("answer"):
            out.append(f'<div class="k2lab-runlane-answer">{markdown_html(ln["answer"])}</div>')
        out.append("</details>")
    out.append("</div></div>")
    return "".join(out)


def verify_line(v: dict[str, Any]) -> str:
    checks = sum(len(r["checks"]) for r in v["rounds"])
    reason = next((r["reason"] for r in reversed(v["rounds"]) if r["reason"]), "")
    return (
        f"Verify: {v['text']} ({_count(len(v['rounds']), 'round')}, "
        f"{_count(checks, 'check')} run){': ' + reason if reason else ''}"
    )


def _verify_html(v: dict[str, Any]) -> str:
    out = [
        f'<div class="k2lab-verify k2lab-{esc(v["outcome"] or "verifying")}" '
        f'data-outcome="{esc(v["outcome"] or "")}"><strong>{esc(verify_line(v))}</strong>'
    ]
    for r in v["rounds"]:
        out.append(f'<details class="k2lab-verify-round"><summary>Round {r["round"]}</summary>')
        for c in r["checks"]:
            out.append(f'<pre class="k2lab-code k2lab-hl">{highlight_python(c["code"])}</pre>')
            if c["output"]:
                out.append(_output_html(c["output"], "k2lab-stdout"))
        if r["summary"]:
            out.append(markdown_html(r["summary"]))
        out.append("</details>")
    out.append("</div>")
    return "".join(out)


def _call_html(card: dict[str, Any]) -> str:
    st = card["status"]
    by = f" by {card['by']}" if card.get("by") else ""
    # the fold's words (``view.call_label``): the live view and the saved card say the same
    meta = [f"<code>{esc(card['name'])}</code>", f"{esc(card['label'])}{esc(by)}"]
    if card.get("duration") is not None:
        meta.append(esc(fmt_seconds(card["duration"])))
    out = [
        f'<div class="k2lab-call k2lab-status-{esc(st)}" data-call-id="{esc(card["call_id"])}">',
        f'<div class="k2lab-call-head">Tool call {" · ".join(meta)}</div>',
    ]
    if card.get("edited_code") is not None:
        out.append(
            '<details class="k2lab-proposed"><summary>proposed by the model</summary>'
            f'<pre class="k2lab-code k2lab-hl">{highlight_python(card["code"])}</pre></details>'
            '<div class="k2lab-label">what ran (edited by the user)</div>'
            f'<pre class="k2lab-code k2lab-hl">{highlight_python(card["edited_code"])}</pre>'
        )
    else:
        out.append(f'<pre class="k2lab-code k2lab-hl">{highlight_python(card["code"])}</pre>')
    if card.get("problem"):
        out.append(f'<div class="k2lab-problem">{esc(card["problem"])}</div>')
    if st == "rejected" and card.get("feedback"):
        out.append(f'<div class="k2lab-feedback">Feedback: {esc(card["feedback"])}</div>')
    if card.get("output") is not None and st != "rejected" and not card.get("problem"):
        cls = "k2lab-result k2lab-ok" if card.get("ok") else "k2lab-result k2lab-failed"
        out.append(f'<div class="{cls}">')
        if card["output"].strip():
            out.append(_output_html(card["output"], "k2lab-stdout"))
        sent = card.get("sent_to_model") or []
        out.extend(display_html(d, sent=i in sent) for i, d in enumerate(card.get("display") or []))
        out.append("</div>")
    if card.get("replay"):
        r = card["replay"]
        verdict = "output changed" if r.get("changed") else "same output"
        out.append(f'<div class="k2lab-replay">Replayed: {esc(verdict)}</div>')
    out.append("</div>")
    return "".join(out)


CSS_PATH = Path(__file__).parent / "trace_view.css"


@lru_cache(maxsize=1)
def trace_css() -> str:
    """The live view's stylesheet, squeezed, so the saved trace looks the same where styles work."""
    css = re.sub(r"/\*.*?\*/", "", CSS_PATH.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"\s+", " ", css).strip()


def render_html(snap: dict[str, Any]) -> str:
    head = snap["head"]
    cards = {c["call_id"]: c for c in snap["cards"]}
    out = [
        f'<div class="k2lab-trace" data-k2lab-run-id="{esc(head.get("run_id", ""))}" '
        f'data-k2lab-version="1"><style>{trace_css()}</style>',
        f'<div class="k2lab-head"><strong>k2lab run</strong> '
        f'<span class="k2lab-status">{esc(status_line(head, len(snap["steps"])))}</span></div>',
    ]
    if head.get("isolation") == "in-kernel":
        out.append(
            '<div class="k2lab-warning"><strong>Sandbox off:</strong> tool code ran in the '
            "notebook's own kernel.</div>"
        )
    if head.get("parent_run_id"):
        fork = f" at call {head['forked_from_call']}" if head.get("forked_from_call") else ""
        out.append(
            f'<div class="k2lab-fork">Branch of run {esc(head["parent_run_id"])}{esc(fork)}</div>'
        )
    out.append(
        f'<div class="k2lab-prompt"><strong>Prompt</strong><pre>{esc(head["prompt"])}</pre></div>'
    )
    if snap.get("lanes"):
        out.append(_lanes_html(snap["lanes"]))
    for st in snap["steps"]:
        out.append(f'<div class="k2lab-step" data-step="{st["step"]}">')
        if st["reasoning"]:
            tokens = (
                ""
                if st["tokens"] is None  # a step replayed from the record counted nothing
                else f" · {st['tokens']} tokens"
            )
            summary = f"Step {st['step']} · reasoning{tokens} · {fmt_seconds(st['duration'])}"
            out.append(
                f'<details class="k2lab-reasoning"><summary>{esc(summary)}</summary>'
                f"<pre>{esc(st['reasoning'])}</pre></details>"
            )
        else:
            out.append(f'<div class="k2lab-step-head">Step {st["step"]}</div>')
        if st["content"] and st["calls"]:  # text said alongside tool calls
            out.append(f'<div class="k2lab-content">{markdown_html(st["content"])}</div>')
        out.extend(_call_html(cards[c]) for c in st["calls"] if c in cards)
        out.append("</div>")
    for m in head.get("messages") or []:
        out.append(
            f'<div class="k2lab-message k2lab-{esc(m["level"])}">{esc(m["kind"])}: '
            f"{esc(m['text'])}</div>"
        )
    if head.get("answer"):
        answer = markdown_html(head["answer"])
        out.append(f'<div class="k2lab-answer"><strong>Answer</strong>{answer}</div>')
    if head.get("heavy") and head.get("lanes_note"):
        out.append(
            f'<div class="k2lab-runlanes-note">Aggregation of {esc(head["lanes_note"])}</div>'
        )
    if head.get("verify"):
        out.append(_verify_html(head["verify"]))
    out.append("</div>")
    return "".join(out)


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in text.splitlines())


def _image_lines(card: dict[str, Any]) -> list[str]:
    """Markdown cannot show a result's images: one line each says it was there (and whether
    the model saw it)."""
    sent = card.get("sent_to_model") or []
    lines = []
    for i, d in enumerate(card.get("display") or []):
        data = d.get("data") if isinstance(d, dict) else None
        mime = next((m for m in (data or {}) if str(m).startswith("image/")), None)
        if mime is not None:
            lines.append(f"*[{mime} output{', sent to the model' if i in sent else ''}]*")
    return lines


def render_markdown(snap: dict[str, Any]) -> str:
    head = snap["head"]
    cards = {c["call_id"]: c for c in snap["cards"]}
    out = [f"**k2lab run** `{head.get('run_id', '')}` — {status_line(head, len(snap['steps']))}"]
    if head.get("isolation") == "in-kernel":
        out.append("**Sandbox off:** tool code ran in the notebook's own kernel.")
    out.append("**Prompt**\n\n" + _quote(markdown_safe(head["prompt"])))
    for ln in snap.get("lanes") or []:
        out.append(f"**{lane_line(ln)}**")
        if ln.get("answer"):
            out.append(_quote(markdown_safe(ln["answer"])))
    for st in snap["steps"]:
        if st["reasoning"]:
            out.append(
                f"*Step {st['step']} reasoning:*\n\n" + _quote(markdown_safe(st["reasoning"]))
            )
        for cid in st["calls"]:
            c = cards.get(cid)
            if c is None:
                continue
            out.append(f"**Tool call** `{c['name']}` ({c['label']})")
            if c.get("edited_code") is not None:
                out.append("Proposed:\n\n" + _fence(c["code"], "python"))
                out.append("Ran (edited by the user):\n\n" + _fence(c["edited_code"], "python"))
            else:
                out.append(_fence(c["code"], "python"))
            if c.get("feedback") and c["status"] == "rejected":
                fb = markdown_safe(c["feedback"])
                out.append(f"Feedback: {fb}" if fb == c["feedback"] else f"Feedback:\n\n{fb}")
            if c.get("problem"):
                out.append(markdown_safe(c["problem"]))
            elif c.get("output") and c["status"] != "rejected":
                out.append(_fence(strip_ansi(c["output"]), "text"))
            out.extend(_image_lines(c))
    if head.get("answer"):
        out.append("**Answer**\n\n" + markdown_safe(head["answer"]))
    if head.get("heavy") and head.get("lanes_note"):
        out.append(f"*Aggregation of {head['lanes_note']}*")
    if head.get("verify"):
        out.append(f"**{verify_line(head['verify'])}**")
    return "\n\n".join(out) + "\n"
