"""The one scrubber: keys out of every string that comes from outside k2lab before it is an event.

Every face (CLI, trace files, the panel, the notebook) shows events and nothing else, so keys are
removed where events are made: the provider scrubs what it builds from a provider's answer
(errors, HTTP bodies, retry reasons, streamed text), and the agent loop passes every event through
``Scrubber.event`` before it is emitted. Two strengths:

- ``exact``: the known secret values (the resolved API key, the well-known key variables, a base
  URL's password) are replaced wherever they appear. Cheap (a substring search per secret), so it
  runs on everything, the model's reasoning, answer and tool arguments included.
- ``text``: ``exact`` plus patterns for what a provider may echo in an error: ``Authorization`` /
  ``Bearer`` header values, ``user:pass@`` in URLs, URL query strings, ``key=...`` pairs and common
  key shapes (``sk-...``, ``ghp_...``, JWTs). Used on diagnostics only (errors, notices, retry
  reasons), never on the model's own text, where "sk-..." may be what the user asked about.

``StreamScrub`` does ``exact`` on text that arrives in pieces: a key split across two deltas is
still caught (it holds back at most ``len(longest secret) - 1`` characters that could start one).
A ``Scrubber`` never shows its secrets (``repr`` gives only their count).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

REDACTED = "[redacted]"
#: shorter values would redact ordinary text ("1", "test"); keys are far longer
MIN_SECRET = 4
#: environment variables that hold keys k2lab may use (their values are always scrubbed)
KEY_VARIABLES = ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "OPENROUTER_API_KEY")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a header quoted in an error: Authorization: Bearer x, "authorization": "Basic x", api-key=x
    (
        re.compile(
            r"""(?i)(["']?\b(?:proxy-)?(?:authorization|x-api-key|api-key|cookie|set-cookie)"""
            r"""["']?\s*[:=]\s*["']?)[^"'\r\n,;}\]]+"""
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    # user:pass@ in any URL
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@"), r"\1" + REDACTED + "@"),
    # query strings of URLs (tokens travel there: ?key=..., ?token=..., signed URLs)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>]*"), r"\1?" + REDACTED),
    # key=value pairs outside URLs
    (
        re.compile(
            r"(?i)\b((?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password|passwd)"
            r"\s*[=:]\s*[\"']?)[^\s\"'&,;}\]]{4,}"
        ),
        r"\1" + REDACTED,
    ),
    # common key shapes: OpenAI/Moonshot/OpenRouter sk-..., GitHub, Slack, AWS, Hugging Face, JWT
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), REDACTED),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{16,}"), REDACTED),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),
)


def env_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """The values of the key variables k2lab reads (set or not in this process)."""
    env = os.environ if environ is None else environ
    return [env[v] for v in KEY_VARIABLES if env.get(v)]


def url_secrets(url: str) -> list[str]:
    """What in a base URL may be a secret: its password (and user), their Basic-auth form and its
    query values."""
    try:
        parts = urlsplit(url)
        user, password = parts.username or "", parts.password or ""
        found = [password, user, *(v for _, v in parse_qsl(parts.query))]
        if user or password:  # what HTTP clients send for it: Authorization: Basic <this>
            found.append(base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode())
    except ValueError:
        return []
    return [s for s in found if s]


def clean_url(url: str) -> str:
    """A URL without ``user:password@``, query string or fragment (where keys sometimes hide)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Scrubber:
    """Removes known secret values (``exact``) and secret-looking text (``text``) from strings."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET}
        # longest first: a key that contains another is replaced whole
        self._secrets: tuple[str, ...] = tuple(sorted(found, key=len, reverse=True))

    @classmethod
    def for_provider(cls, api_key: str = "", base_url: str = "") -> Scrubber:
        """The resolved key, the key variables' values and the base URL's own secrets."""
        return cls([api_key, *env_secrets(), *url_secrets(base_url)])

    def __repr__(self) -> str:
        return f"Scrubber({len(self._secrets)} secrets)"

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def merged(self, other: Scrubber) -> Scrubber:
        return Scrubber((*self._secrets, *other._secrets))

    @property
    def longest(self) -> int:
        return len(self._secrets[0]) if self._secrets else 0

    # -- strings -------------------------------------------------------------------------------
    def exact(self, text: str) -> str:
        """``text`` with every known secret value replaced by ``[redacted]``."""
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def text(self, text: str) -> str:
        """For diagnostics (errors, HTTP bodies, notices): ``exact`` plus the key patterns."""
        text = self.exact(str(text))
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def value(self, v: Any) -> Any:
        """``exact`` through lists and dicts (keys too); other values unchanged."""
        if not self._secrets:
            return v
        if isinstance(v, str):
            return self.exact(v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            return {self.value(k): self.value(x) for k, x in v.items()}
        return v

    def partial_start(self, text: str) -> int:
        """The first index from which ``text``'s end could be the start of a secret (else len)."""
        n = len(text)
        best = n
        for s in self._secrets:
            p = text.find(s[0], max(0, n - len(s) + 1))
            while p != -1 and p < best:
                if s.startswith(text[p:]):
                    best = p
                    break
                p = text.find(s[0], p + 1)
        return best

    # -- events --------------------------------------------------------------------------------
    def event(self, ev: Any) -> Any:
        """Scrub an event (``k2lab.events``) in place and return it.

        Diagnostic fields get ``text``; everything the model or a tool produced gets ``exact``;
        ``run.start``'s base URL loses userinfo and query.
        """
        t = ev.type
        if t in ("reasoning.delta", "content.delta"):
            if self._secrets:
                ev.text = self.exact(ev.text)
        elif t in ("error", "notice"):
            ev.message = self.text(ev.message)
            if getattr(ev, "summary", ""):  # a summarising compaction's: the model wrote it
                ev.summary = self.exact(ev.summary)
        elif t == "retry":
            ev.reason = self.text(ev.reason)
        elif t == "run.end":
            if ev.error is not None:
                ev.error = self.text(ev.error)
            ev.answer = self.exact(ev.answer)
        elif t == "run.start":
            ev.base_url = self.exact(clean_url(ev.base_url))
            ev.prompt = self.exact(ev.prompt)
            if ev.context is not None:  # attached to the prompt: the model reads it too
                ev.context = self.value(ev.context)
            if ev.note is not None:
                ev.note = self.exact(ev.note)
        elif t == "verify.end":  # the verify pass (k2lab.agent.verify): tool text and errors
            ev.reason = self.text(ev.reason)
            ev.summary = self.exact(ev.summary)
            ev.checks = self.value(ev.checks)
        elif not self._secrets:
            return ev
        elif t == "step.end":
            ev.content = self.exact(ev.content)
            ev.reasoning = self.exact(ev.reasoning)
            for call in ev.tool_calls:  # in place: the loop appends these same dicts
                for k, v in call.items():
                    call[k] = self.exact(v)
        elif t == "tool.proposed":
            ev.arguments = self.exact(ev.arguments)
            if ev.problem is not None:
                ev.problem = self.exact(ev.problem)
        elif t == "tool.decision":
            if ev.arguments is not None:
                ev.arguments = self.exact(ev.arguments)
            if ev.feedback is not None:
                ev.feedback = self.exact(ev.feedback)
        elif t == "tool.result":
            ev.output = self.exact(ev.output)
            ev.display = self.value(ev.display)
            if ev.people_output is not None:
                ev.people_output = self.exact(ev.people_output)
        return ev


class StreamScrub:
    """``Scrubber.exact`` over text arriving in pieces (one per stream channel).

    ``feed`` returns what can be shown now; a tail that could be the start of a secret waits for
    the next piece; ``flush`` returns it at the end.
    """

    __slots__ = ("_s", "_tail")

    def __init__(self, scrubber: Scrubber) -> None:
        self._s = scrubber
        self._tail = ""

    def feed(self, piece: str) -> str:
        text = self._s.exact(self._tail + piece if self._tail else piece)
        cut = self._s.partial_start(text)
        self._tail = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        tail, self._tail = self._tail, ""
        return tail
