"""The JSON bodies the REST API accepts, declared once (pydantic, strict, no unknown keys).

``parse(model, body)`` turns any problem (not JSON, wrong type, unknown key, value out of range,
a non-finite number such as ``Infinity``/``NaN``, nesting too deep to parse) into a
``PayloadError`` whose message names the field, for a 400 answer.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from k2lab.providers.presets import PRESETS

M = TypeVar("M", bound=BaseModel)

MAX_VERIFY_ROUNDS = 5
MAX_HEAVY = 8
MAX_DATA_PATHS = 32
#: session settings that shape the run, not the agent (not ``Settings`` fields)
RUN_OPTIONS = ("verify", "verify_rounds", "heavy", "heavy_concurrency")


class PayloadError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows (only finite numbers are accepted)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SessionSettings(_Strict):
    """Per-session overrides of the server's settings (the key is never one of them)."""

    model: str | None = Field(None, min_length=1, max_length=200)
    base_url: str | None = Field(None, max_length=500)
    preset: str | None = None
    approve: Literal["ask", "auto", "never"] | None = None
    max_steps: int | None = Field(None, ge=1, le=10_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    wall_time: float | None = Field(None, ge=0.0)
    max_total_tokens: int | None = Field(None, ge=0)
    tool_timeout: float | None = Field(None, gt=0.0, le=86_400.0)
    #: the verify pass (``k2lab run --verify``): after the answer, up to ``verify_rounds`` checks
    verify: bool | None = None
    verify_rounds: int | None = Field(None, ge=1, le=MAX_VERIFY_ROUNDS)
    #: heavy mode (``--heavy N``): N lanes, then an aggregation; 0 = off
    heavy: int | None = Field(None, ge=0, le=MAX_HEAVY)
    heavy_concurrency: int | None = Field(None, ge=1, le=MAX_HEAVY)
    #: files or folders on the server the sandbox may read (``--data``), at /data/NAME; relative
    #: paths are relative to the Jupyter server's root; checked when the session is created
    data: list[str] | None = Field(None, max_length=MAX_DATA_PATHS)

    @field_validator("data")
    @classmethod
    def _paths(cls, v: list[str] | None) -> list[str] | None:
        for i, p in enumerate(v or []):
            if not p.strip() or "\x00" in p or len(p) > 4096:
                raise ValueError(f"data[{i}]: not a path (empty, a NUL byte, or over 4096 chars)")
        return v

    @model_validator(mode="after")
    def _run_options(self) -> SessionSettings:
        # verify_rounds without verify, heavy_concurrency without heavy: kept, not used (the
        # panel sends its whole form)
        return self

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v and v not in PRESETS:
            raise ValueError(f"unknown preset; known: {', '.join(PRESETS)}")
        return v


class CreateSession(_Strict):
    title: str = Field("", max_length=200)
    settings: SessionSettings = Field(default_factory=lambda: SessionSettings.model_validate({}))

    @model_validator(mode="before")
    @classmethod
    def _no_key(cls, data: Any) -> Any:
        settings = data.get("settings") if isinstance(data, dict) else None
        if isinstance(settings, dict) and "api_key" in settings:
            raise ValueError(
                "settings.api_key: the API key is configured on the server (K2LAB_API_KEY "
                "or c.K2Lab.api_key) and is never sent from the browser"
            )
        return data


class MessageContext(_Strict):
    kind: Literal["cell", "selection", "notebook", "variables"]
    path: str = Field(..., max_length=1000)
    text: str = Field(..., max_length=500_000)


class CopyVariables(_Strict):
    """``with``: variables of a notebook's kernel to copy into the sandbox (``%k2 --with``)."""

    #: the notebook's kernel (its id on this server, as the panel knows it)
    kernel_id: str = Field(..., min_length=1, max_length=200)
    names: list[str] = Field(..., min_length=1, max_length=20)

    @field_validator("names")
    @classmethod
    def _identifiers(cls, v: list[str]) -> list[str]:
        for n in v:
            if not n.isidentifier() or n.startswith("__"):
                raise ValueError(f"{n[:100]!r} is not a variable name")
        return v


class RunOptionsBody(_Strict):
    """A message's own run options: for this run only (the session's settings stay)."""

    verify: bool | None = None
    verify_rounds: int | None = Field(None, ge=1, le=MAX_VERIFY_ROUNDS)
    heavy: int | None = Field(None, ge=0, le=MAX_HEAVY)
    heavy_concurrency: int | None = Field(None, ge=1, le=MAX_HEAVY)
    #: copy these variables of the notebook's kernel into the sandbox before the run
    with_: CopyVariables | None = Field(None, alias="with")


class SendMessage(_Strict):
    text: str = Field(..., min_length=1, max_length=200_000)
    context: MessageContext | None = None
    #: verify / heavy for this message's run, over the session's settings
    options: RunOptionsBody | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the message is empty")
        return v

    def run_context(self) -> dict[str, str] | None:
        """The attached notebook context as ``run.start.context`` ({label, text}); the model
        reads the message and it joined by ``k2lab.events.user_message``. None: nothing."""
        if self.context is None or not self.context.text.strip():
            return None
        c = self.context
        what = {
            "cell": "the current cell",
            "selection": "the selected text",
            "variables": "the live variables in the kernel",
        }.get(c.kind, "")
        what = what or "the notebook"
        return {"label": f"{what} of {c.path}", "text": c.text}


class DecideCall(_Strict):
    call_id: str = Field(..., min_length=1, max_length=500)
    #: the run the call belongs to (``tool.proposed.run_id``); default: the current run
    run_id: str | None = Field(None, min_length=1, max_length=200)
    decision: Literal["approve", "edit", "reject"]
    arguments: str | None = Field(None, max_length=1_000_000)
    feedback: str | None = Field(None, max_length=20_000)

    @model_validator(mode="after")
    def _consistent(self) -> DecideCall:
        if self.decision == "edit":
            if self.arguments is None:
                raise ValueError("an edit needs 'arguments' (the JSON object to run instead)")
            try:
                parsed = json.loads(self.arguments, parse_constant=_no_constant)
            except RecursionError:
                raise ValueError("'arguments' is nested too deeply") from None
            except ValueError as e:
                raise ValueError(f"'arguments' is not valid JSON: {e}") from e
            if not isinstance(parsed, dict):
                raise ValueError("'arguments' must be a JSON object")
        elif self.arguments is not None:
            raise ValueError(f"'arguments' only goes with decision 'edit', not {self.decision!r}")
        if self.feedback is not None and self.decision != "reject":
            raise ValueError("'feedback' only goes with decision 'reject'")
        return self


class StopRun(_Strict):
    #: heavy mode: the one lane to stop ("1".."N", or "aggregate"); none: the whole run
    lane: str | None = Field(None, min_length=1, max_length=50)


class ReplayCall(_Strict):
    call_id: str = Field(..., min_length=1, max_length=500)
    #: the run of the call when its id appears in several runs (default: the latest)
    run_id: str | None = Field(None, min_length=1, max_length=200)


class ForkCall(_Strict):
    """A branch from a recorded call (``k2lab.agent.fork``)."""

    run_id: str = Field(..., min_length=1, max_length=200)
    call_id: str = Field(..., min_length=1, max_length=500)
    #: the call's arguments to run instead (JSON text, as the model writes them); none: unchanged
    arguments: str | None = Field(None, max_length=1_000_000)


def parse(model: type[M], body: bytes) -> M:
    try:
        data = json.loads(body or b"{}", parse_constant=_no_constant)
    except RecursionError:
        raise PayloadError("the body is not JSON this server accepts: nested too deeply") from None
    except ValueError as e:
        raise PayloadError(f"the body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise PayloadError(
            "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
                for err in e.errors()
            )
        ) from None
