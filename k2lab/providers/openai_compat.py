"""Stream one assistant step from an OpenAI-compatible endpoint, with bounded retries.

Owns the HTTP side: the request body, the SSE stream, retries and error wording. Chunk parsing is
``stream_state.StreamState`` (pure). It must not touch the conversation (the loop appends the
``StepEnd`` it yields) and never puts the API key in a message.

The hot path stays flat in the history length: the request body is joined from
``Conversation.messages_json()`` (JSON fragments cached per message) and a tools JSON cached per
tool list, and posted as bytes through the real ``openai.AsyncOpenAI`` client with ``content=``,
so the SDK's recursive request transform (O(history) per call) never runs. The SSE body is read as
raw bytes and decoded by ``stream_state.SSEDecoder`` (cheaper per event than the SDK's decoder and
its per-chunk models); ``[DONE]`` and ``finish_reason`` are checked here, because the SDK ends a
cut stream silently.

Retries (408/409/429/5xx, connection errors, timeouts, empty or cut streams, errors sent inside
the stream): exponential backoff with jitter from ``retry_base`` up to ``retry_cap`` seconds,
``Retry-After`` honoured (capped at ``retry_after_cap``), at most ``max_attempts`` attempts in all.
Each retry yields a ``Retry`` event *before* sleeping (``attempt`` = 1 for the first retry,
``max_attempts`` = attempts in all). When a stream fails after reasoning/content deltas were
yielded, a ``Notice(kind="step_restart")`` comes first: faces drop that step's partial deltas.

Bounds: ``idle_timeout`` seconds without progress (no response headers, or only keep-alive
comments and empty chunks) ends an attempt as a retryable stall; more than ``max_line_bytes`` in
one SSE line or ``max_step_chars`` in one step is a ``ProviderError(kind="too_large")``, not
retried. The run's wall time is the loop's (it cancels this stream wherever it waits).

Keys: every string built from what the provider sent (error bodies, retry reasons, streamed text)
goes through ``self.scrubber`` (``k2lab.scrub``), which knows the resolved key, the key variables'
values and the base URL's password; the host in messages has no userinfo.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import openai

from k2lab.events import Event, Notice, Retry
from k2lab.providers.base import ProviderError
from k2lab.providers.stream_state import (
    MAX_LINE_BYTES,
    MAX_STEP_CHARS,
    SSEDecoder,
    StreamState,
    StreamTooLarge,
)
from k2lab.scrub import Scrubber, clean_url

if TYPE_CHECKING:
    from k2lab.agent.context import Conversation

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Quota/billing 429s do not heal by waiting: fail at once with a clear message.
_QUOTA_WORDS = ("quota", "insufficient", "balance", "billing", "suspended")
_OVERFLOW_WORDS = ("exceed", "maximum", "too long", "too many", "limit", "longer than")


class _Retryable(Exception):
    def __init__(self, reason: str, *, status: int | None = None, after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.after = after


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date), if any."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_context_overflow(status: int, message: str) -> bool:
    """Wording seen for a too-long prompt (Moonshot: "exceeded model token limit"; vLLM, SGLang,
    OpenRouter: "... maximum context length ..."; OpenAI: context_length_exceeded)."""
    if status == 413:
        return True
    m = message.lower()
    return (
        status == 400 and ("context" in m or "token" in m) and any(w in m for w in _OVERFLOW_WORDS)
    )


class OpenAICompatProvider:
    """A ``ChatProvider`` for Moonshot, OpenRouter, vLLM, SGLang and the offline demo model."""

    #: backoff schedule (seconds); tests shrink these
    retry_base = 0.3
    retry_cap = 5.0
    retry_after_cap = 60.0

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        model_label: str | None = None,
        temperature: float = 1.0,
        max_tokens: int = 32768,
        max_attempts: int = 4,
        request_timeout: float = 600.0,
        idle_timeout: float = 300.0,
        max_step_chars: int = MAX_STEP_CHARS,
        max_line_bytes: int = MAX_LINE_BYTES,
        scrubber: Scrubber | None = None,
        demo: bool = False,
        vision: bool = False,
    ) -> None:
        self.base_url = base_url
        #: the model accepts images: tool-result images go back to it (``k2lab.agent.images``)
        self.vision = vision
        #: the offline demo model (``run.start.demo``)
        self.demo = demo
        self.model = model
        self.model_label = model_label or model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_attempts = max(1, max_attempts)
        #: seconds without progress (headers, or a delta) before an attempt counts as stalled
        self.idle_timeout = idle_timeout
        self.max_step_chars = max_step_chars
        self.max_line_bytes = max_line_bytes
        #: scrubs every provider-supplied string; the agent loop uses it for every event too
        self.scrubber = Scrubber.for_provider(api_key, base_url)
        if scrubber is not None:
            self.scrubber = self.scrubber.merged(scrubber)
        # A keyless self-hosted server still needs some bearer; never fall back to OPENAI_API_KEY.
        # the read timeout bounds silence (also before the response headers) by idle_timeout
        self._read_timeout = min(request_timeout, idle_timeout)
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "none",
            max_retries=0,
            timeout=openai.Timeout(request_timeout, read=self._read_timeout),
        )
        self._head = ('{"model":' + _dumps(model) + ',"messages":').encode()
        self._tools_key: list[dict[str, Any]] | None = None
        self._tools_json = b""
        self._host = urlsplit(clean_url(base_url)).netloc or "the endpoint"

    # -- request -------------------------------------------------------------------------------
    def request_body(self, conversation: Conversation, tools: list[dict[str, Any]]) -> bytes:
        """The exact bytes posted for a step (joined from cached JSON fragments)."""
        if tools is not self._tools_key:  # the registry hands out the same list until it changes
            self._tools_key = tools
            self._tools_json = (
                (',"tools":' + _dumps(tools) + ',"tool_choice":"auto"').encode() if tools else b""
            )
        tail = (  # built per request: temperature / max_tokens may be changed between steps
            f',"temperature":{_dumps(self.temperature)},"max_tokens":{int(self.max_tokens)}'
            ',"stream":true,"stream_options":{"include_usage":true}}'
        )
        # one join: the history was encoded once, when each message was appended
        return b"".join((self._head, conversation.messages_json(), self._tools_json, tail.encode()))

    # -- streaming -----------------------------------------------------------------------------
    async def stream(
        self, conversation: Conversation, tools: list[dict[str, Any]], *, step: int
    ) -> AsyncIterator[Event]:
        body = self.request_body(conversation, tools)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            state = StreamState(step, max_chars=self.max_step_chars, scrubber=self.scrubber)
            try:
                # aclosing: a consumer that stops early (stop, cancel) closes the HTTP response now
                async with contextlib.aclosing(self._attempt(body, state)) as events:
                    async for ev in events:
                        yield ev
                for ev in state.flush():  # text the scrubber held back (a possible key's start)
                    yield ev
                end = state.finish()
                end.duration = time.monotonic() - started
                yield end
                return
            except _Retryable as r:
                if attempt >= self.max_attempts:
                    raise self._give_up(r, attempt) from None
                if state.deltas:
                    yield Notice(
                        message="The model's stream failed after partial output "
                        f"({self._clean(r.reason)}); "
                        "that partial step is discarded and the step starts again.",
                        kind="step_restart",
                    )
                delay = self._backoff(attempt, r.after)
                yield Retry(
                    attempt=attempt,
                    max_attempts=self.max_attempts,
                    delay=round(delay, 3),
                    reason=self._clean(r.reason),
                )
                await asyncio.sleep(delay)

    async def _attempt(self, body: bytes, state: StreamState) -> AsyncGenerator[Event, None]:
        """One request; yields deltas/usage; raises ``_Retryable`` or ``ProviderError``."""
        try:
            stream = await self._client.post(
                "/chat/completions",
                cast_to=object,
                content=body,
                stream=True,
                stream_cls=openai.AsyncStream[object],
                options={"headers": {"Accept": "text/event-stream"}},
            )
        except openai.APIStatusError as e:
            raise self._status_error(e) from None
        except openai.APITimeoutError:
            raise _Retryable(
                f"the provider sent nothing for {self._read_timeout:g} s (idle timeout)"
            ) from None
        except openai.APIConnectionError as e:
            raise _Retryable(f"connection error: {self._cause(e)}") from None
        decoder = SSEDecoder(self.max_line_bytes)
        reads = stream.response.aiter_bytes().__aiter__()
        ended = False
        # Silence is the HTTP client's read timeout (= idle_timeout); bytes without progress
        # (keep-alive comments, empty chunks) are caught here, at each read: no timer per read.
        clock = time.monotonic
        until = clock() + self.idle_timeout
        seen = (state.chars, state.completed)
        try:
            while not ended:
                try:
                    raw = await reads.__anext__()
                except StopAsyncIteration:
                    payloads, ended = decoder.finish(), True
                except Exception as e:  # only reading the body happens here: a transport fault
                    if state.completed:  # the message is whole; only its tail (usage) was lost
                        break
                    name = type(e).__name__
                    if "Timeout" in name or isinstance(e, TimeoutError):
                        raise _Retryable(
                            f"the stream timed out: nothing for {self._read_timeout:g} s "
                            f"({name}; idle timeout)"
                        ) from None
                    raise _Retryable(f"the stream broke: {name}: {e}") from None
                else:
                    payloads = decoder.feed(raw)
                for data in payloads:
                    for ev in state.feed_data(data):
                        yield ev
                    if state.error is not None:
                        raise _Retryable(
                            f"the provider reported an error mid-stream: {state.error}"
                        )
                now = (state.chars, state.completed)
                if now != seen:  # progress: the idle clock starts again
                    seen, until = now, clock() + self.idle_timeout
                elif clock() > until and not state.completed:
                    raise _Retryable(
                        f"the stream stalled: no model output for {self.idle_timeout:g} s "
                        "(only keep-alives or empty chunks; idle timeout)"
                    )
        except StreamTooLarge as e:
            raise ProviderError(
                f"{self.model_label} at {self._host}: {e}. The step is stopped and not retried.",
                kind="too_large",
            ) from None
        finally:
            await stream.close()
        if state.chunks == 0:
            raise _Retryable("the provider sent an empty stream")
        if not state.completed:
            raise _Retryable("the stream was cut (no finish_reason and no [DONE])")

    # -- errors --------------------------------------------------------------------------------
    def _cause(self, e: BaseException) -> str:
        c = e.__cause__ or e.__context__
        return self._clean(f"{type(c).__name__}: {c}" if c is not None else str(e))

    def _clean(self, text: str) -> str:
        """A provider-supplied string for a message: one line, keys scrubbed, then cut."""
        return self.scrubber.text(" ".join(str(text).split()))[:500]

    def _provider_message(self, e: openai.APIStatusError) -> str:
        body = e.body
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict) and err.get("message"):
                return self._clean(str(err["message"]))
            if isinstance(err, str):
                return self._clean(err)
        return self._clean(e.message)

    def _status_error(self, e: openai.APIStatusError) -> Exception:
        status = e.status_code
        msg = self._provider_message(e)
        where = f"{self.model_label} at {self._host}"
        if status in (401, 403):
            return ProviderError(
                f"{where} refused the API key (HTTP {status}: {msg}). Set K2LAB_API_KEY (or "
                "MOONSHOT_API_KEY / OPENROUTER_API_KEY) to a valid key for this endpoint.",
                kind="auth",
                status=status,
            )
        if _is_context_overflow(status, msg):
            return ProviderError(
                f"{where}: the conversation no longer fits the model's context window "
                f"(HTTP {status}: {msg})",
                kind="context_overflow",
                status=status,
            )
        if status == 429 and any(w in msg.lower() for w in _QUOTA_WORDS):
            return ProviderError(
                f"{where}: the account's quota or balance is exhausted (HTTP 429: {msg})",
                kind="quota",
                status=status,
            )
        if status in RETRYABLE_STATUS:
            return _Retryable(
                f"HTTP {status}: {msg}", status=status, after=_retry_after(e.response.headers)
            )
        return ProviderError(f"{where} answered HTTP {status}: {msg}", status=status)

    def _give_up(self, r: _Retryable, attempts: int) -> ProviderError:
        kind = "cut_stream" if "stream" in r.reason else "provider"
        return ProviderError(
            f"{self.model_label} at {self._host} failed after {attempts} attempts: "
            f"{self._clean(r.reason)}",
            kind=kind,
            status=r.status,
        )

    def _backoff(self, attempt: int, after: float | None) -> float:
        delay: float = min(self.retry_cap, self.retry_base * 2 ** (attempt - 1))
        delay *= random.uniform(0.8, 1.2)  # jitter: clients retrying together spread out
        if after is not None:
            delay = max(delay, min(after, self.retry_after_cap))
        return delay

    async def aclose(self) -> None:
        await self._client.close()
