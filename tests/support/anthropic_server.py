"""A scripted stand-in for the Anthropic Messages API, served over real HTTP on 127.0.0.1.

It speaks the wire format the real clients read: ``POST /v1/messages`` as one JSON message, or
as server-sent events when the request says ``"stream": true`` (message_start,
content_block_start, content_block_delta with text_delta / input_json_delta, content_block_stop,
message_delta with the stop reason and usage, message_stop, and a ping), plus
``POST /v1/messages/count_tokens``. Every request (any method, any path) is recorded with its
headers and JSON body; an unknown route answers 404 in Anthropic's error shape.

Two ways to script the replies, checked in this order:

- rules, for clients that make side calls in varying order (Claude Code)::

      fake.when(lambda c: "SAVE" in c.last_user_text and not c.tool_results,
                FakeAnthropic.tool_result({"content": "..."}, name="mcp__team-memory__save_memory"))
      fake.when(lambda c: bool(c.tool_results), FakeAnthropic.text("Saved."))
      fake.fallback = FakeAnthropic.text("ok")   # title generation and other side calls

  A rule's reply may be a function of the conversation (to echo what it received).
- a queue, for the server's own forced-tool calls, consumed one reply per request::

      fake.script(FakeAnthropic.error(529, "overloaded_error", "Overloaded"),
                  FakeAnthropic.tool_result({"action": "ADD", "reason": "new"}))

  Replies scripted for one tool (``script_for``) answer only requests that force that tool, in
  order, before the common queue; ``default_for`` answers a tool's requests once nothing else
  is scripted for them (runs whose number and order of calls is not fixed, e.g. concurrent
  ingest decisions).

When no rule matches, the queue is empty and there is no fallback, the server answers 500, so a
forgotten script fails fast instead of hanging.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

_ids = itertools.count(1)
_JSON_CHUNK = 24  # characters of tool input per input_json_delta: several deltas per call


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body`` is None for a success: the message is built per request."""

    status: int = 200
    body: dict[str, Any] | None = None
    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "tool_use"
    input_tokens: int = 100
    output_tokens: int = 20
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    held: bool = False


@dataclass(frozen=True)
class Recorded:
    """One HTTP request the fake received, and when (time.monotonic(), once read)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass(frozen=True)
class ToolOutcome:
    name: str
    input: dict[str, Any]
    text: str
    is_error: bool


@dataclass(frozen=True)
class Conversation:
    """A Messages API request body, read the way a script needs it (``at``: when it came)."""

    body: dict[str, Any]
    at: float = 0.0

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def streaming(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def forced_tool(self) -> str | None:
        choice = self.body.get("tool_choice") or {}
        return choice.get("name") if isinstance(choice, dict) else None

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("name")) for t in self.body.get("tools") or [] if isinstance(t, dict)]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for m in self.body.get("messages") or [] if isinstance(m, dict)]

    @property
    def system_text(self) -> str:
        return "\n".join(_texts(self.body.get("system")))

    def texts(self, role: str) -> list[str]:
        """The text of each message of ``role`` (tool results included), oldest first."""
        return ["\n".join(_texts(m.get("content"))) for m in self.messages
                if m.get("role") == role]

    def text_of(self, role: str) -> str:
        return "\n".join(self.texts(role))

    @property
    def last_user_text(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return "\n".join(_texts(users[-1].get("content"))) if users else ""

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return self._blocks("assistant", "tool_use")

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        return self._blocks("user", "tool_result")

    @property
    def outcomes(self) -> list[ToolOutcome]:
        """Each tool call of the conversation with its result, in call order."""
        results = {r.get("tool_use_id"): r for r in self.tool_results}
        return [ToolOutcome(str(u.get("name")), u.get("input") or {},
                            "\n".join(_texts(results[u.get("id")].get("content"))),
                            bool(results[u.get("id")].get("is_error")))
                for u in self.tool_uses if u.get("id") in results]

    def tool_result_text(self, tool_name: str) -> str:
        """The text of every result of the tool calls named ``tool_name``."""
        return "\n".join(o.text for o in self.outcomes if o.name == tool_name)

    def _blocks(self, role: str, kind: str) -> list[dict[str, Any]]:
        return [b for m in self.messages if m.get("role") == role
                for b in _content_blocks(m.get("content")) if b.get("type") == kind]


def _content_blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)] if isinstance(content, list) else []


def _texts(content: object) -> Iterator[str]:
    for block in _content_blocks(content):
        if block.get("type") == "text":
            yield str(block.get("text", ""))
        elif block.get("type") == "tool_result":
            yield from _texts(block.get("content"))


Predicate = Callable[[Conversation], bool]
Answer = Reply | Callable[[Conversation], Reply]


class FakeAnthropic:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[tuple[Predicate, Answer]] = []
        self._script: deque[Reply] = deque()
        self._by_tool: dict[str, deque[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._exchanges: list[Recorded] = []
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.fallback: Reply | None = None
        self.errors: list[str] = []  # rules that raised (each answered with a 400)

    # --- reply builders ------------------------------------------------------------------

    @staticmethod
    def tool_result(
        tool_input: dict[str, Any],
        *,
        name: str | None = None,
        input_tokens: int = 100,
        output_tokens: int = 20,
        stop_reason: str = "tool_use",
    ) -> Reply:
        """A tool_use block: the model's call of ``name`` (default: the tool the request
        forced, as the server's own LLM calls do)."""
        block = {"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "input": tool_input}
        if name is not None:
            block["name"] = name
        return Reply(
            content=[block],
            stop_reason=stop_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    @staticmethod
    def text(text: str, *, input_tokens: int = 100, output_tokens: int = 20) -> Reply:
        """A text-only reply that ends the turn."""
        return Reply(
            content=[{"type": "text", "text": text}],
            stop_reason="end_turn",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    @staticmethod
    def error(
        status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None
    ) -> Reply:
        """An API error with Anthropic's body, e.g. ``error(429, "rate_limit_error", "...")``."""
        body = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": f"req_fake_{next(_ids):06d}",
        }
        return Reply(status=status, body=body, headers=headers or {})

    @staticmethod
    def delay(seconds: float, then: Reply | None = None) -> Reply:
        """``then`` (default: a 500) after ``seconds``; stop() cuts the wait short."""
        reply = then or FakeAnthropic.error(500, "api_error", "FakeAnthropic: delayed reply")
        return replace(reply, delay_s=seconds)

    @staticmethod
    def held(then: Reply) -> Reply:
        """``then``, sent only once the test calls ``release()`` (or stop()): lets a test act
        while the caller waits for the model, with no timing involved."""
        return replace(then, held=True)

    def release(self) -> None:
        self._released.set()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- scripting and inspection --------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def script_for(self, tool: str, *replies: Reply) -> None:
        with self._lock:
            self._by_tool.setdefault(tool, deque()).extend(replies)

    def scripted_for(self, tool: str) -> int:
        """How many replies ``script_for`` still holds for ``tool``."""
        with self._lock:
            return len(self._by_tool.get(tool, ()))

    def default_for(self, tool: str, reply: Reply) -> None:
        with self._lock:
            self._defaults[tool] = reply

    def when(self, predicate: Predicate, answer: Answer) -> None:
        """Answer every Messages request ``predicate`` accepts (rules are tried in the order
        they were added, before the queue)."""
        with self._lock:
            self._rules.append((predicate, answer))

    def reset(self) -> None:
        """Forget the rules, the queue, the fallback and what was recorded."""
        with self._lock:
            self._rules.clear()
            self._script.clear()
            self._by_tool.clear()
            self._defaults.clear()
            self._exchanges.clear()
            self.errors.clear()
            self.fallback = None

    @property
    def exchanges(self) -> list[Recorded]:
        """Every request received, any route, oldest first."""
        with self._lock:
            return list(self._exchanges)

    @property
    def conversations(self) -> list[Conversation]:
        """Every POST /v1/messages, oldest first."""
        return [Conversation(r.body, r.at) for r in self.exchanges if _is_messages(r)]

    @property
    def requests(self) -> list[dict[str, Any]]:
        """JSON bodies of every POST /v1/messages received, oldest first."""
        return [c.body for c in self.conversations]

    @property
    def request_headers(self) -> list[dict[str, str]]:
        return [r.headers for r in self.exchanges if _is_messages(r)]

    @property
    def api_keys(self) -> list[str | None]:
        """The key each request carried, as ``x-api-key`` or a bearer token."""
        return [_api_key(h) for h in self.request_headers]

    @property
    def calls(self) -> int:
        return len(self.requests)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def _record(self, exchange: Recorded) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def _answer(self, body: dict[str, Any]) -> Reply:
        conversation = Conversation(body)
        with self._lock:
            rules = list(self._rules)
        try:
            for predicate, answer in rules:
                if predicate(conversation):
                    return answer(conversation) if callable(answer) else answer
        except Exception as error:  # a broken script: say so at once, in a reply not retried
            message = f"FakeAnthropic: a rule failed: {type(error).__name__}: {error}"
            with self._lock:
                self.errors.append(message)
            return FakeAnthropic.error(400, "invalid_request_error", message)
        tool = (body.get("tool_choice") or {}).get("name")
        with self._lock:
            if self._by_tool.get(tool):
                return self._by_tool[tool].popleft()
            if self._script:
                return self._script.popleft()
            if tool in self._defaults:
                return self._defaults[tool]
        return self.fallback or FakeAnthropic.error(
            500, "api_error", "FakeAnthropic: no scripted response left")

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _hold(self) -> None:
        while not (self._released.wait(0.05) or self._stopping.is_set()):
            pass


def _is_messages(exchange: Recorded) -> bool:
    return exchange.method == "POST" and exchange.path.split("?")[0] == "/v1/messages"


def _api_key(headers: dict[str, str]) -> str | None:
    bearer = headers.get("authorization", "")
    return headers.get("x-api-key") or bearer.removeprefix("Bearer ") or None


def _message(reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
    forced = (request.get("tool_choice") or {}).get("name")
    tools = request.get("tools") or [{}]
    content = [
        {"name": forced or tools[0].get("name", "tool"), **block}
        if block["type"] == "tool_use"
        else block
        for block in reply.content
    ]
    return {
        "id": f"msg_fake_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "unknown"),
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def stream_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The server-sent events that deliver ``message``, in the order the real API sends them."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1,
                       "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            empty = {**block, "input": {}}
            raw = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": raw[i:i + _JSON_CHUNK]}
                      for i in range(0, len(raw), _JSON_CHUNK)]
        else:
            empty = {**block, "text": ""}
            words = block["text"].split(" ")
            deltas = [{"type": "text_delta", "text": w if i == 0 else " " + w}
                      for i, w in enumerate(words)]
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": empty}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": message["stop_reason"],
                                      "stop_sequence": None},
                            "usage": {"output_tokens": usage["output_tokens"]}}
    yield "message_stop", {"type": "message_stop"}


def count_tokens(body: dict[str, Any]) -> int:
    """A rough count (4 characters a token): clients only use it to plan, never to bill."""
    return max(1, len(json.dumps(body)) // 4)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> FakeAnthropic:
        return cast(FakeAnthropic, self.server.fake)  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        body = self._read_body()
        route = self.path.split("?")[0]
        if route == "/v1/messages" and isinstance(body, dict):
            reply = self.fake._answer(body)
            if reply.delay_s:
                self.fake._wait(reply.delay_s)
            if reply.held:
                self.fake._hold()
            if reply.status == 200 and reply.body is None and body.get("stream"):
                self._stream(_message(reply, body))
            else:
                self._send(reply, body)
        elif route == "/v1/messages/count_tokens" and isinstance(body, dict):
            self._json(200, {"input_tokens": count_tokens(body)})
        else:
            self._not_found()

    def do_GET(self) -> None:
        self._read_body()
        self._not_found()

    do_PUT = do_DELETE = do_PATCH = do_GET

    def do_HEAD(self) -> None:
        self._read_body()
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.fake._record(Recorded(self.command, self.path,
                                   {k.lower(): v for k, v in self.headers.items()}, body,
                                   time.monotonic()))
        return body

    def _not_found(self) -> None:
        self._send(FakeAnthropic.error(404, "not_found_error",
                                       f"no route {self.command} {self.path}"), {})

    def _send(self, reply: Reply, request: dict[str, Any]) -> None:
        body = reply.body if reply.body is not None else _message(reply, request)
        self._json(reply.status, body, reply.headers)

    def _json(self, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", str(body.get("request_id") or body.get("id")))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to tell it

    def _stream(self, message: dict[str, Any]) -> None:
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("request-id", f"req_fake_{next(_ids):06d}")
            self.send_header("connection", "close")
            self.end_headers()
            for event, data in stream_events(message):
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass
