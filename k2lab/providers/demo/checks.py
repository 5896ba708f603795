"""The demo model's part in test-time scaling: the verify pass and heavy mode's aggregation.

Like the demos themselves, both read only the request, and every figure they state comes from
tool output they were given:

- **verify** (the follow-up that ``k2lab.agent.verify`` sends): the demo re-runs the last code the
  answer rests on, in the same sandbox, and compares the ``key=value`` figures both runs printed
  (numbers within 1 %: the demos' own randomness is seeded, so they should match exactly). Same
  figures: ``VERDICT: holds``; different: ``fault`` (and, asked to correct, it answers with the
  re-run's figures); a re-run that did not run: ``cannot verify``. Verifying heavy mode's
  aggregated answer (its own sandbox: none of the lanes' variables), it re-runs, in order, the
  code of the ``<evidence>`` of the first lane it followed, when the evidence holds every call
  of that lane in full (else: ``cannot verify``, saying why).
- **aggregate** (heavy mode's tool-less last step): it groups the lanes by the figures their
  answers state, follows the largest group, and says why and which lanes it set aside. It says
  that it compares figures, not reasoning: a real model weighs the lanes' evidence.
"""

from __future__ import annotations

import re
from typing import Any

from k2lab.providers.demo.turn import Exchange, Reply, Turn, quote, values

VERIFY_HEAD = "Verification pass, round"
CORRECT_HEAD = "Your check found a fault in your answer"
RERUN = "verify re-run"
_LANE = re.compile(
    r'<lane id="([^"]+)" status="answered"[^>]*>\s*<answer>\n?(.*?)\n?</answer>', re.S
)
_TASK = re.compile(r"<task>\n?(.*?)\n?</task>", re.S)
_FAILED = re.compile(r"^- lane (\S+): (.*)$", re.M)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_TAG_LINE = re.compile(r"^#\s*step:.*$", re.M)
_FOLLOWED = re.compile(r"^Lanes followed: ([^,\s]+)", re.M)
_EVIDENCE_CALL = re.compile(
    r"\[tool call \d+: (\S+)\]\ncode:\n(.*?)\nresult \((ok|error)\):\n(.*?)(?=\n\n\[tool call |\Z)",
    re.S,
)


def is_verify(prompt: str) -> bool:
    return prompt.startswith(VERIFY_HEAD)


def is_correction(prompt: str) -> bool:
    return prompt.startswith(CORRECT_HEAD)


#: how heavy mode's aggregation prompt starts (``k2lab.agent.heavy.aggregation_prompt``)
_AGGREGATION = re.compile(r"^Task given to \d+ independent lane\(s\):\n<task>\n")


def is_aggregation(prompt: str) -> bool:
    return _AGGREGATION.match(prompt) is not None


# -- verify ----------------------------------------------------------------------------------
def _basis(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Exchange | None:
    """The last python call before the current user message that ran cleanly and was not itself
    a verify re-run: the code the answer under check rests on."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    found: Exchange | None = None
    for end in users[1:]:  # each earlier turn ends where the next user message starts
        for ex in Turn(messages[:end], tools).exchanges:
            if ex.name == "python" and ex.status == "ok" and ex.tag != RERUN and ex.code:
                found = ex
    return found


def _lane_basis(messages: list[dict[str, Any]]) -> tuple[Exchange | None, str]:
    """Verifying an aggregated answer: the code of the followed lane's evidence, all its calls
    in order, as one exchange (or None, and why)."""
    prompts = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    if not prompts or not is_aggregation(prompts[0]):
        return None, ""
    said = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "assistant")
    followed = _FOLLOWED.search(said)
    if followed is None:
        return None, "the aggregated answer names no lane it followed"
    lane = followed.group(1)
    block = re.search(
        rf'<lane id="{re.escape(lane)}"[^>]*>.*?<evidence>\n?(.*?)\n?</evidence>', prompts[0], re.S
    )
    if block is None:
        return None, f"the aggregation prompt has no evidence for lane {lane}"
    evidence = block.group(1)
    if "[... omitted" in evidence:
        return None, f"lane {lane}'s evidence is shortened, so its code cannot be re-run whole"
    calls = _EVIDENCE_CALL.findall(evidence)
    clean = [(code, out) for name, code, ok, out in calls if name == "python" and ok == "ok"]
    if not clean or len(clean) != len(calls):
        return None, f"lane {lane}'s evidence has no code that ran cleanly and alone"
    code = "\n\n".join(_TAG_LINE.sub("", c).strip() for c, _ in clean)
    output = "\n".join(o for _, o in clean)
    return Exchange("", "python", f"lane {lane}'s evidence", code, "ok", output), ""


def _same(before: str, after: str) -> tuple[bool, list[str]]:
    """Do two outputs state the same figures? (and the figures compared, for the text)."""
    a, b = values(before), values(after)
    keys = [k for k in a if k in b]
    if not keys:
        return before.strip() == after.strip(), []
    differ = []
    for k in keys:
        try:
            x, y = float(a[k]), float(b[k])
            ok = abs(x - y) <= 0.01 * max(abs(x), abs(y), 1e-12)
        except ValueError:
            ok = a[k] == b[k]
        if not ok:
            differ.append(f"{k}: {a[k]} then {b[k]}")
    return not differ, differ or [f"{k}={a[k]}" for k in keys[:6]]


def verify(t: Turn, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Reply:
    if not t.has_python:
        return t.answer(
            "This step offers no tools, so I can't re-compute anything.",
            "This step has no python tool, so I can't check the answer with code.\n\n"
            "VERDICT: cannot verify",
        )
    basis = _basis(messages, tools)
    why = ""
    if basis is None:
        basis, why = _lane_basis(messages)
    rerun = t.last(RERUN)
    if basis is None:
        return t.answer(
            f"No code ran cleanly for this answer{f' ({why})' if why else ''}, so there is "
            "nothing I can re-compute.",
            "I have no code result behind the answer to re-compute"
            f"{f' ({why})' if why else ''}, so I can't check it with the tools."
            "\n\nVERDICT: cannot verify",
        )
    if rerun is None:
        code = _TAG_LINE.sub("", basis.code, count=1).strip()
        own = basis.tag.startswith("lane ")  # an aggregated answer: a sandbox of its own
        where = "this check's own sandbox (none of the lanes' state)" if own else "the same sandbox"
        return t.call(
            RERUN,
            code,
            f"To check the answer I'll re-run the code it rests on (step '{basis.tag}') in "
            f"{where} and compare the figures it prints with the ones I reported. The demo's "
            "randomness is seeded, so they should match; a difference means the answer does not "
            "rest on what I thought.",
        )
    if rerun.status != "ok":
        why = "it was rejected" if rerun.status == "rejected" else f"it ended {rerun.status}"
        return t.answer(
            f"The re-run did not run cleanly ({why}), so the check is incomplete.",
            f"I tried to re-run the code behind the answer, but {why}:\n\n"
            f"```\n{quote(rerun.output)}\n```\n\nVERDICT: cannot verify",
        )
    same, figures = _same(basis.output, rerun.output)
    listed = "; ".join(figures) or "the same output, line for line"
    if same:
        return t.answer(
            f"The re-run printed the same figures ({listed}); the answer holds.",
            f"I re-ran the code behind the answer (step '{basis.tag}') and compared what it "
            f"printed with the first run: the figures agree ({listed}). The check re-computes; "
            "it does not test the method itself.\n\nVERDICT: holds",
        )
    return t.answer(
        f"The figures changed on a re-run ({listed}): the answer does not hold as stated.",
        f"Re-running the code behind the answer (step '{basis.tag}') printed different "
        f"figures: {listed}.\n\nVERDICT: fault",
    )


def correct(t: Turn, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Reply:
    """Asked to correct after a fault: the re-run's figures are the answer now."""
    rerun = None
    for ex in Turn(messages[:-1], tools).exchanges:
        if ex.tag == RERUN and ex.status == "ok":
            rerun = ex
    if rerun is None:
        return t.answer(
            "I have no re-computed result to correct the answer with.",
            "I found a fault but have no re-computed figures to replace the answer with, so the "
            "answer above should not be relied on.",
        )
    return t.answer(
        "The re-run's figures are the ones to report.",
        f"Corrected answer, from the re-run of the code:\n\n```\n{quote(rerun.output, 1500)}\n```",
    )


# -- heavy mode's aggregation ----------------------------------------------------------------
def aggregate(t: Turn) -> Reply:
    lanes = _LANE.findall(t.prompt)
    failed = _FAILED.findall(t.prompt)
    if not lanes:
        return t.answer(
            "No lane finished, so there is nothing to aggregate.",
            "No lane produced an answer, so I have no result to give."
            + "".join(f"\n- lane {n}: {why}" for n, why in failed)
            + "\n\nLanes followed: none (none finished).",
        )
    # the figures a lane states, less those it only repeats from the task
    task = _TASK.search(t.prompt)
    given = set(_NUMBER.findall(task.group(1))) if task else set()
    groups: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for name, answer in lanes:
        figures = tuple(n for n in _NUMBER.findall(answer) if n not in given)
        groups.setdefault(figures, []).append((name, answer))
    chosen = max(groups.values(), key=len)  # ties: the first lane's group (dicts keep order)
    names = [n for n, _ in chosen]
    others = [n for g in groups.values() if g is not chosen for n, _ in g]
    agree = (
        f"all {len(lanes)} finished lanes state the same figures"
        if not others
        else f"lanes {', '.join(names)} state the same figures; lane(s) {', '.join(others)} "
        "state different ones"
    )
    set_aside = (
        f" I set aside lane(s) {', '.join(others)}: their figures disagree." if others else ""
    )
    unfinished = (
        " Did not finish: " + "; ".join(f"lane {n} ({why})" for n, why in failed) + "."
        if failed
        else ""
    )
    return t.answer(
        f"I compared the lanes' answers by the figures they state: {agree}. I am the offline "
        "demo model: I compare figures, I don't weigh the lanes' reasoning as a real model would "
        "(and the demos' code is seeded, so lanes that ran the same code agree by construction).",
        f"{chosen[0][1].strip()}\n\n"
        f"Lanes followed: {', '.join(names)}, because {agree} (the offline demo model compares "
        "the figures in the answers; it does not judge the reasoning)." + set_aside + unfinished,
    )
