"""The offline demo model: an OpenAI-compatible Chat Completions server speaking Moonshot's dialect.

It runs on 127.0.0.1 (a free port) in a daemon thread, so the demo goes through the same real HTTP
path as Kimi K2 Thinking: ``POST /v1/chat/completions`` (streamed as SSE with ``reasoning_content``
deltas, tool-call arguments in small fragments, ``usage`` inside the last choice, ``data: [DONE]``;
or a whole message when ``stream`` is false) and ``GET /v1/models``. What it says comes from
``scripts.reply_for``; this module only owns the wire format and the pacing.

Pacing: reasoning and answers stream a few words per chunk with a small delay (``delay`` seconds,
default from ``K2LAB_DEMO_DELAY``, else 0.03) so the demo reads like a live model; tests set 0.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from k2lab.providers.demo.scripts import DEMO_MODEL_LABEL, reply_for
from k2lab.providers.demo.turn import Reply

__all__ = ["DEMO_MODEL_LABEL", "DemoServer", "start_demo_server"]

log = logging.getLogger("k2lab.demo")

DEMO_MODEL_ID = "k2lab-demo"
DEFAULT_DELAY = 0.03


def _env_delay() -> float:
    try:
        return max(0.0, float(os.environ.get("K2LAB_DEMO_DELAY", DEFAULT_DELAY)))
    except ValueError:
        return DEFAULT_DELAY


def _words(text: str, rng: random.Random) -> Iterator[str]:
    """Text in chunks of 1-4 words (whitespace kept), like a tokenizer-paced stream."""
    parts = re.findall(r"\S+\s*|\s+", text)
    i = 0
    while i < len(parts):
        n = rng.randint(1, 4)
        yield "".join(parts[i : i + n])
        i += n


def _fragments(text: str, rng: random.Random) -> Iterator[str]:
    """Tool-call arguments in fragments of 1-12 characters, as K2 servers send them."""
    i = 0
    while i < len(text):
        n = rng.randint(1, 12)
        yield text[i : i + n]
        i += n


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive; streamed bodies use chunked encoding

    def log_message(self, format: str, *args: Any) -> None:  # quiet: stderr belongs to the face
        pass

    # -- routes --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(
                200,
                {
                    "object": "list",
                    "data": [{"id": DEMO_MODEL_ID, "object": "model", "owned_by": "k2lab"}],
                },
            )
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError) as e:
            self._error(400, f"invalid request: {e}")
            return
        tools = body.get("tools") or []
        try:
            reply = reply_for(messages, tools if isinstance(tools, list) else [])
        except Exception as e:  # a script bug must read as an answer, not a dead server
            reply = Reply(
                reasoning="",
                content=f"The {DEMO_MODEL_LABEL} hit an internal problem: {type(e).__name__}: {e}",
            )
        model = str(body.get("model") or DEMO_MODEL_ID)
        prompt_tokens = _tokens(json.dumps(messages))
        if body.get("stream"):
            self._stream(reply, model, prompt_tokens, len(messages))
        else:
            self._whole(reply, model, prompt_tokens)

    # -- responses -----------------------------------------------------------------------------
    def _json(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(
            status,
            {"error": {"message": message, "type": "invalid_request_error", "code": status}},
        )

    def _usage(self, reply: Reply, prompt_tokens: int) -> dict[str, int]:
        completion = _tokens(
            reply.reasoning + reply.content + "".join(c.arguments for c in reply.tool_calls)
        )
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "cached_tokens": 0,
        }

    def _whole(self, reply: Reply, model: str, prompt_tokens: int) -> None:
        msg: dict[str, Any] = {
            "role": "assistant",
            "content": reply.content,
            "reasoning_content": reply.reasoning,
        }
        if reply.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in reply.tool_calls
            ]
        self._json(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": msg,
                        "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                    }
                ],
                "usage": self._usage(reply, prompt_tokens),
            },
        )

    def _stream(self, reply: Reply, model: str, prompt_tokens: int, seed: int) -> None:
        delay = self.server.delay if self.server.delay is not None else _env_delay()
        rng = random.Random(seed)  # same history -> same chunking (reproducible tests)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": None, **extra}
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
            return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            time.sleep(delay * 5)  # time to first token
            self._send(chunk({"role": "assistant", "content": ""}))
            for piece in _words(reply.reasoning, rng):
                self._send(chunk({"reasoning_content": piece}))
                time.sleep(delay)
            for piece in _words(reply.content, rng):
                self._send(chunk({"content": piece}))
                time.sleep(delay)
            for i, call in enumerate(reply.tool_calls):
                head = {"index": i, "id": call.id, "type": "function"}
                fn = {"name": call.name, "arguments": ""}
                self._send(chunk({"tool_calls": [{**head, "function": fn}]}))
                for frag in _fragments(call.arguments, rng):
                    self._send(
                        chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]})
                    )
                    time.sleep(delay / 4)
            finish = "tool_calls" if reply.tool_calls else "stop"
            # Moonshot puts usage inside the last choice
            self._send(chunk({}, finish_reason=finish, usage=self._usage(reply, prompt_tokens)))
            self._send(b"data: [DONE]\n\n")
            self._send(b"")  # the last chunk of the chunked encoding
        except OSError:  # broken pipe, reset: the client stopped reading (a stopped run): fine
            self.close_connection = True

    def _send(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    delay: float | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # the default prints a traceback on stderr, which belongs to the CLI's one-line errors
        log.debug("demo model: error serving %s", client_address, exc_info=True)


class DemoServer:
    """A running demo model server. ``base_url`` is what an OpenAI client needs."""

    def __init__(self, *, delay: float | None = None, port: int = 0) -> None:
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.delay = delay
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model_label = DEMO_MODEL_LABEL
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="k2lab-demo-model", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DemoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_demo_server(*, delay: float | None = None, port: int = 0) -> DemoServer:
    """Start the demo model on 127.0.0.1 (``port=0``: a free port). ``delay=None``: from env."""
    return DemoServer(delay=delay, port=port)
