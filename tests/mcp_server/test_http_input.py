"""The custom routes (/hooks, /api) over real HTTP: bodies refused by size before they are read,
any JSON shape answered with a clear 400, and hook input checked like the tools' arguments."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, MCPError

from mcp_server.browser_api import BODY_LIMIT as API_LIMIT
from mcp_server.server import create_server
from team_memory_core.hook_protocol import BODY_MAX_BYTES as HOOKS_LIMIT
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Stack
from tests.mcp_server.test_http import HttpServer, http_server
from tests.mcp_server.test_tools import call_error
from tests.support.stored import capture_session

pytestmark = pytest.mark.anyio
__all__ = ["http_server"]  # the fixture, imported for these tests

# One id for every run: parallel workers (pytest-xdist) must collect the same test ids.
FORGET = f"/api/memories/{uuid.UUID(int=1)}/forget"


def _headers(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.api_key}"}


async def _declared_but_not_sent(server: HttpServer, stack: Stack, path: str) -> bytes:
    """Send headers declaring a 50 MB body and one byte of it: a route that reads the body
    before refusing it would wait for the rest."""
    port = int(server.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Authorization: Bearer {stack.api_key}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n{"
                      ).encode())
        await writer.drain()
        with anyio.fail_after(10):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/hooks/events", "/hooks/context", FORGET])
async def test_a_declared_oversized_body_is_refused_unread(
    http_server: HttpServer, running: Stack, path: str
) -> None:
    head = await _declared_but_not_sent(http_server, running, path)
    assert head.startswith(b"HTTP/1.1 413 ")


async def _chunks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(65_536, total - sent)
        sent += piece
        yield b" " * piece


@pytest.mark.parametrize(("path", "limit"), [("/hooks/events", HOOKS_LIMIT),
                                              (FORGET, API_LIMIT)])
async def test_a_streamed_oversized_body_is_refused(
    http_server: HttpServer, running: Stack, path: str, limit: int
) -> None:
    async with httpx.AsyncClient(base_url=http_server.base, timeout=30) as http:
        answer = await http.post(path, content=_chunks(limit + 65_536),
                                 headers=_headers(running))
    assert answer.status_code == 413
    assert answer.json() == {"error": f"request body is larger than {limit:,} bytes"}


@pytest.mark.parametrize("path", ["/hooks/events", "/hooks/context", FORGET])
async def test_deeply_nested_json_is_a_clear_400(
    http_server: HttpServer, running: Stack, path: str
) -> None:
    deep = "[" * 10_000 + "]" * 10_000  # under every limit, far past any parser's depth
    async with httpx.AsyncClient(base_url=http_server.base, timeout=30) as http:
        answer = await http.post(path, content=deep, headers=_headers(running))
    assert answer.status_code == 400
    assert "nested too deeply" in answer.text or "recursion limit" in answer.text


def _event(**changes: Any) -> dict[str, Any]:
    event = {"key": "tool:toolu_1", "session_id": "checked", "kind": "tool",
             "project": "shop", "tool": "Bash", "files": ["a.py"], "summary": "ran tests",
             "at": datetime.now(UTC).isoformat()}
    return {**event, **changes}


@pytest.mark.parametrize(("changes", "reason"), [
    ({"summary": "ran\x00tests"}, "summary contains a NUL byte"),
    ({"key": "tool:\x00"}, "key contains a NUL byte"),
    ({"files": ["a.py", "b\x00.py"]}, "files contains a NUL byte"),
    ({"project": "shop\x00"}, "project contains a NUL byte"),
    ({"at": "0001-01-01T00:00:00Z"}, "at must be a time between 1970 and 2999"),
    ({"at": "0001-01-01T00:00:00+05:00"}, "at must be a time between 1970 and 2999"),
    ({"at": "10000-01-01T00:00:00Z"}, "at must be a time between 1970 and 2999"),
])
async def test_hook_events_are_checked_like_tool_arguments(
    http_server: HttpServer, running: Stack, changes: dict[str, Any], reason: str
) -> None:
    async with httpx.AsyncClient(base_url=http_server.base, timeout=30) as http:
        answer = await http.post("/hooks/events", json={"events": [_event(**changes)]},
                                 headers=_headers(running))
        context = await http.post("/hooks/context", json={"project": "shop\x00"},
                                  headers=_headers(running))
    assert answer.status_code == 400 and reason in answer.json()["error"]
    assert context.status_code == 400 and "NUL" in context.json()["error"]
    assert running.principal.key_id is not None
    async with tenant_tx(running.pool, running.principal.tenant_id) as conn:
        assert await capture_session(conn, running.principal.key_id, "checked") is None


# Out of range before parsing (a year past 9999 or 0, a timestamp past 9999, not a date at
# all: pydantic's own message for these names no range) and after it (a year past 2999).
OUT_OF_RANGE = ["0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00Z", "10000-01-01T00:00:00Z",
                "0000-01-01T00:00:00Z", "-0001-01-01", "275760-09-13T00:00:00Z", 1e20,
                "2024-13-01", "next tuesday", "3000-01-01", "1969-12-31T23:59:59Z"]


@pytest.mark.parametrize("when", OUT_OF_RANGE)
async def test_tools_refuse_out_of_range_times_with_the_reason_and_the_range(
    stack: Stack, when: str | float
) -> None:
    async with Client(stack.server) as client:
        for name in ("since", "until"):
            error = await call_error(client, "search_memory", query="x", **{name: when})
            assert f"{name} must be a time between 1970 and 2999 (ISO 8601" in error, error


async def test_a_refused_manifesto_prompt_says_why(stack: Stack) -> None:
    bound = stack.principal.model_copy(update={"project": "api"})
    async with Client(create_server(stack.service, default_principal=bound)) as client:
        with pytest.raises(MCPError, match="this key is limited to project 'api'"):
            await client.get_prompt("manifesto", {"project": "web"})
        with pytest.raises(MCPError, match="project must be"):
            await client.get_prompt("manifesto", {"project": "no spaces allowed"})
