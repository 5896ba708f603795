"""The typed events of a run: the one place that defines their names and fields.

Every face (widget, side panel, CLI, trace files) consumes these and nothing else. Ordering rules:

- ``run.start`` is the first event of a run and ``run.end`` the last; exactly one of each.
- Within a step: ``step.start``, then any number of ``reasoning.delta`` / ``content.delta`` /
  ``retry`` / ``usage``, then ``step.end`` (the whole assistant message, as sent back to the model),
  then for each tool call in call order: ``tool.proposed``, ``tool.decision``, ``tool.result``.
- ``error`` and ``notice`` may appear anywhere; an ``error`` with ``fatal=True`` is followed by
  ``run.end`` with ``stop_reason="error"``.
- A ``notice`` with ``kind="step_restart"`` inside a step means the provider's stream failed after
  partial output and the step starts again: faces drop the ``reasoning.delta`` /
  ``content.delta`` text received so far for that step (``step.end`` always holds the truth).
- ``seq`` numbers events of a run from 0 without gaps, so a reconnecting client can ask for
  "everything after N".
- Identity: ``run.start.run_id`` names the run; ``tool.proposed`` / ``tool.decision`` /
  ``tool.result`` carry it too (``run_id``, ``""`` in traces written before it existed).
  ``call_id`` is unique within the run (the loop normalises ids to ``functions.NAME:IDX``, unique in
  the conversation); a reset conversation starts counting again, so key decisions by
  ``(run_id, call_id)``. ``step.end.tool_calls[i]`` has ``id``, ``name``, ``arguments`` and, when
  the model's own id differed, ``model_id``.
- Verify pass (``--verify``): after an answer, ``verify.start`` (round k), the round's steps,
  ``verify.end`` (verdict, outcome); after a ``fault`` the correction's steps, then maybe round
  k+1. All inside the one run, before ``run.end``, whose ``answer`` is the answer that stands.
- Heavy mode (``k2lab run --heavy N``): every event of a lane carries ``lane`` ("1".."N"), the
  aggregation's carry ``lane="aggregate"``; each lane is its own run (``run.start`` .. ``run.end``,
  own ``run_id`` and ``seq``), and lanes interleave in one trace. An event without ``run_id``
  belongs to the latest ``run.start`` of its lane.
- No event holds a key: the loop scrubs every event (``k2lab.scrub``) before it is emitted.

Events are plain dataclasses (cheap to build on the hot path); ``to_dict`` / ``event_from_dict`` are
the serialised form used by the JSONL trace, the notebook mime bundle and the WebSocket.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args

StopReason = Literal[
    "completed",  # the model answered without tool calls
    "max_steps",
    "wall_time",
    "tokens",
    "stopped",  # a person (or the face) stopped the run
    "error",  # a fatal error: provider failed after retries, context overflow...
]

DecisionKind = Literal["approve", "edit", "reject"]


@dataclass(slots=True, kw_only=True)
class _Event:
    seq: int = -1
    ts: float = field(default_factory=time.time)
    #: heavy mode (``k2lab.agent.heavy``): the lane this event belongs to ("1".."N", or
    #: "aggregate"); "" outside heavy mode, and then left out of ``to_dict``
    lane: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not d["lane"]:
            del d["lane"]  # the serialised form of a plain run is unchanged
        d["type"] = self.type  # type: ignore[attr-defined]
        return d


@dataclass(slots=True, kw_only=True)
class RunStart(_Event):
    type: Literal["run.start"] = "run.start"
    run_id: str
    prompt: str
    model: str
    #: What to show users as the model's name ("offline demo model (scripted)" for the demo).
    model_label: str
    base_url: str
    policy: str
    isolation: str
    max_steps: int
    #: the tool names offered to the model (MCP tools as ``mcp__SERVER__TOOL``); never their
    #: configuration (commands, env, headers)
    tools: list[str] = field(default_factory=list)
    #: the tools whose calls Replay may run again (``python``; MCP tools marked read-only);
    #: None in older traces, read as ``["python"]``
    replayable: list[str] | None = None
    parent_run_id: str | None = None  # set for forks and resumed conversations
    forked_from_call: str | None = None
    #: the offline demo model answers (faces read this, never a regex on ``model_label``)
    demo: bool = False
    #: the run's budgets, shown by every face while it runs (absent in older traces: unknown)
    #: seconds for the whole run (None = unlimited)
    wall_time: float | None = None
    #: completion tokens for the whole run (None = unlimited)
    max_total_tokens: int | None = None
    #: completion tokens per model request (None = unknown)
    max_tokens: int | None = None
    #: the model's context window in tokens (0 = unknown); the gauge is the last request's
    #: ``usage.prompt_tokens`` over this
    context_window: int = 0
    #: USD per 1M tokens [input, cached input, output] where the preset knows them, else None
    prices: list[float] | None = None
    #: what the user attached to the prompt (the panel's cell / selection / notebook / variables):
    #: ``{"label": "the current cell of a.ipynb", "text": ...}``; ``prompt`` is then only what the
    #: user typed, and the model reads both joined by ``user_message``. None when nothing was
    #: attached (and in older traces, whose ``prompt`` holds the context as text); left out of
    #: ``to_dict`` when None
    context: dict[str, str] | None = None
    #: what k2lab told the model before the prompt on this turn, not the user's words: the
    #: ``--with`` copies on a follow-up (``k2lab.driver``), or that earlier copies are gone
    #: (the notebook session); the model reads it joined by ``user_message``. Left out of
    #: ``to_dict`` when None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = _Event.to_dict(self)
        for key in ("context", "note"):
            if d[key] is None:
                del d[key]  # the serialised form of a run without them is unchanged
        return d


@dataclass(slots=True, kw_only=True)
class StepStart(_Event):
    type: Literal["step.start"] = "step.start"
    step: int


@dataclass(slots=True, kw_only=True)
class ReasoningDelta(_Event):
    type: Literal["reasoning.delta"] = "reasoning.delta"
    step: int
    text: str


@dataclass(slots=True, kw_only=True)
class ContentDelta(_Event):
    type: Literal["content.delta"] = "content.delta"
    step: int
    text: str


@dataclass(slots=True, kw_only=True)
class ToolCallSpec:
    """One assembled tool call as the model sent it (arguments are the raw JSON text)."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True, kw_only=True)
class StepEnd(_Event):
    """The whole assistant message of a step, exactly as it goes back into the history."""

    type: Literal["step.end"] = "step.end"
    step: int
    content: str
    reasoning: str
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    finish_reason: str | None = None
    duration: float = 0.0


@dataclass(slots=True, kw_only=True)
class ToolProposed(_Event):
    type: Literal["tool.proposed"] = "tool.proposed"
    step: int
    call_id: str
    run_id: str = ""
    name: str
    arguments: str  # raw JSON text from the model
    #: Set when the arguments are not valid JSON or the tool is unknown; the call then is not
    #: offered for approval: the model gets this error as the tool's result.
    problem: str | None = None


@dataclass(slots=True, kw_only=True)
class ToolDecision(_Event):
    type: Literal["tool.decision"] = "tool.decision"
    call_id: str
    run_id: str = ""
    decision: DecisionKind
    by: Literal["policy", "user"]
    arguments: str | None = None  # the arguments that ran when decision == "edit"
    feedback: str | None = None  # what the model is told when decision == "reject"


@dataclass(slots=True, kw_only=True)
class ToolResult(_Event):
    type: Literal["tool.result"] = "tool.result"
    call_id: str
    name: str
    run_id: str = ""
    ok: bool
    #: The bounded text the model reads as the tool message.
    output: str
    #: Rich outputs for people: Jupyter mime bundles ({"data": {...}, "metadata": {...}}).
    display: list[dict[str, Any]] = field(default_factory=list)
    duration: float = 0.0
    truncated: bool = False
    #: The text for people when it differs from ``output``: the notes meant for the model
    #: ("[image/png output, 29 kB, shown to the user]", ``<Figure size ...>``) dropped.
    people_output: str | None = None
    #: Indices into ``display`` of the images that also went to the model (vision models).
    sent_to_model: list[int] = field(default_factory=list)
    #: The call ran with arguments a person edited (``tool.decision.arguments``): ``output`` is
    #: the tool's own output, and the model read it after the note ``tool_message`` adds. Older
    #: traces have no field and the note inside ``output``.
    edited: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = _Event.to_dict(self)
        # absent when unused: the serialised form of a result without them is unchanged
        if d["people_output"] is None:
            del d["people_output"]
        if not d["sent_to_model"]:
            del d["sent_to_model"]
        if not d["edited"]:
            del d["edited"]
        return d


@dataclass(slots=True, kw_only=True)
class Usage(_Event):
    type: Literal["usage"] = "usage"
    step: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True, kw_only=True)
class Retry(_Event):
    type: Literal["retry"] = "retry"
    attempt: int  # 1 for the first retry
    max_attempts: int
    delay: float
    reason: str


@dataclass(slots=True, kw_only=True)
class Error(_Event):
    type: Literal["error"] = "error"
    message: str
    kind: str = "error"  # provider, context_overflow, sandbox, tool, internal...
    fatal: bool = False


@dataclass(slots=True, kw_only=True)
class Notice(_Event):
    """Something users should know that is not an error (sandbox restarted, context compacted)."""

    type: Literal["notice"] = "notice"
    message: str
    kind: str = "info"
    #: the summarising compaction's (``k2lab.agent.summarise``; kind "compaction"): "summary"
    #: (``summary`` replaced ``summarised`` earlier messages, the last ``keep_steps`` steps kept)
    #: or "failed" (nothing changed); "" for hiding tool outputs. What a rebuilt conversation
    #: replays (``k2lab.agent.history``); all four are left out of ``to_dict`` when "".
    compaction: str = ""
    summary: str = ""
    summarised: int = 0
    keep_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = _Event.to_dict(self)
        if not self.compaction:  # a notice's serialised form is unchanged
            for k in ("compaction", "summary", "summarised", "keep_steps"):
                del d[k]
        return d


VerifyVerdict = Literal["holds", "fault", "cannot_verify", "none"]
VerifyOutcome = Literal["verified", "corrected", "unverified"]


@dataclass(slots=True, kw_only=True)
class VerifyStart(_Event):
    """A verify round begins (``--verify``, ``k2lab.agent.verify``): ``prompt`` is the follow-up
    user message that asks the model to check the answer it gave; the round's steps follow."""

    type: Literal["verify.start"] = "verify.start"
    run_id: str = ""
    round: int
    max_rounds: int
    prompt: str = ""


@dataclass(slots=True, kw_only=True)
class VerifyEnd(_Event):
    """A verify round ends. ``outcome`` is the pass's outcome if it ends here (the last
    ``verify.end`` of a run is the pass's outcome): ``verified`` (held on the first check),
    ``corrected`` (a fault was found, and the corrected answer held), ``unverified`` (no verdict,
    "cannot verify", a fault not checked again, or the run ended first: ``reason`` says which).
    ``checks`` are the round's tool calls (``call_id``, ``name``, ``arguments``, ``output``, both
    bounded); ``correction`` is the message asking for a corrected answer when a fault was found."""

    type: Literal["verify.end"] = "verify.end"
    run_id: str = ""
    round: int
    verdict: VerifyVerdict
    outcome: VerifyOutcome
    summary: str = ""
    reason: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)
    correction: str | None = None


@dataclass(slots=True, kw_only=True)
class RunEnd(_Event):
    type: Literal["run.end"] = "run.end"
    stop_reason: StopReason
    answer: str
    steps: int
    tool_calls: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed: float = 0.0
    error: str | None = None


# -- what the model reads, built from fields (the loop and every history rebuild use these) ------
EDIT_NOTE = "[The user edited the arguments before running: {arguments}]\n"

_CONTEXT_TEXT = "{prompt}\n\nContext ({label}):\n```\n{text}\n```"


def tool_message(output: str, edited_arguments: str | None = None) -> str:
    """The tool message the model reads for a result: ``output``, after the edit note when a
    person edited the arguments (pass ``tool.decision.arguments`` when ``tool.result.edited``)."""
    if edited_arguments is None:
        return output
    return EDIT_NOTE.format(arguments=edited_arguments) + output


def user_message(prompt: str, context: dict[str, Any] | None = None, note: Any = None) -> str:
    """The user message the model reads for a ``run.start``: k2lab's ``note`` first when there
    is one, the prompt, then the attached context (``run.start.context``) when it has text."""
    said = f"{note}\n\n{prompt}" if isinstance(note, str) and note else prompt
    if not isinstance(context, dict):
        return said
    text = context.get("text")
    if not isinstance(text, str) or not text.strip():
        return said
    label = context.get("label")
    label = label if isinstance(label, str) and label else "attached"
    return _CONTEXT_TEXT.format(prompt=said, label=label, text=text)


Event = Union[
    RunStart,
    StepStart,
    ReasoningDelta,
    ContentDelta,
    StepEnd,
    ToolProposed,
    ToolDecision,
    ToolResult,
    Usage,
    Retry,
    Error,
    Notice,
    VerifyStart,
    VerifyEnd,
    RunEnd,
]


def _type_name(cls: type[Any]) -> str:
    # with slots=True the class attribute is a descriptor: read the field's default instead
    return str(next(f.default for f in dataclasses.fields(cls) if f.name == "type"))


EVENT_TYPES: dict[str, type[Any]] = {_type_name(cls): cls for cls in get_args(Event)}


def event_from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from its serialised form; unknown keys (from newer versions) are ignored."""
    cls = EVENT_TYPES.get(d.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {d.get('type')!r}")
    names = {f.name for f in dataclasses.fields(cls)} - {"type"}
    return cls(**{k: v for k, v in d.items() if k in names})  # type: ignore[no-any-return]
