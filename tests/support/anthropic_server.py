"""A scripted stand-in for the Anthropic Messages API, served over real HTTP.

Tests point the real ``anthropic`` client at ``FakeAnthropic().base_url`` and script the replies::

    with FakeAnthropic() as fake:
        fake.script(FakeAnthropic.error(529, "overloaded_error", "Overloaded"),
                    FakeAnthropic.tool_result({"action": "ADD", "reason": "new"}))
        ...
        assert fake.requests[0]["model"] == "claude-haiku-4-5"

Each POST /v1/messages consumes the next scripted reply; when none is left the server answers
500 so a forgotten script fails fast instead of hanging.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

_ids = itertools.count(1)


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


class FakeAnthropic:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

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
        """A tool_use block; ``name`` defaults to the tool the request forced."""
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
        """A text-only reply, as a model that ignored the tool would give."""
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

    @property
    def requests(self) -> list[dict[str, Any]]:
        """JSON bodies of every POST /v1/messages received, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self._headers)

    @property
    def api_keys(self) -> list[str | None]:
        """The key each request carried, as ``x-api-key`` or a bearer token."""
        return [_api_key(h) for h in self.request_headers]

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def _take(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
            if self._script:
                return self._script.popleft()
        return FakeAnthropic.error(500, "api_error", "FakeAnthropic: no scripted response left")

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


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


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        fake = cast(FakeAnthropic, self.server.fake)  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path.split("?")[0] != "/v1/messages":
            self._send(FakeAnthropic.error(404, "not_found_error", f"no route {self.path}"), {})
            return
        request = json.loads(raw or b"{}")
        reply = fake._take(request, {k.lower(): v for k, v in self.headers.items()})
        if reply.delay_s:
            fake._wait(reply.delay_s)
        self._send(reply, request)

    def _send(self, reply: Reply, request: dict[str, Any]) -> None:
        body = reply.body if reply.body is not None else _message(reply, request)
        payload = json.dumps(body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", str(body.get("request_id") or body.get("id")))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        pass
