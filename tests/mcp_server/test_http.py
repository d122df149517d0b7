"""The MCP server over real streamable HTTP, with bearer API keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_server.app import http_app
from mcp_server.service import MemoryService
from team_memory import embedded
from team_memory.models import MemoryStatus
from tests.conftest import Stack
from tests.mcp_server.test_tools import DECISIONS, call

pytestmark = pytest.mark.anyio


@dataclass
class HttpServer:
    url: str
    base: str


@pytest.fixture
async def http_server(running: Stack) -> AsyncIterator[HttpServer]:
    port = embedded.free_port()
    settings = running.settings.model_copy(update={"mcp_port": port})
    service = MemoryService(settings=settings, pool=running.pool, temporal=running.client,
                            embedder=running.embedder)
    server = uvicorn.Server(uvicorn.Config(http_app(service), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield HttpServer(url=f"http://127.0.0.1:{port}/mcp", base=f"http://127.0.0.1:{port}")
    server.should_exit = True
    await asyncio.wait_for(task, 10)


def client_for(url: str, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


async def test_save_and_search_over_streamable_http(
    running: Stack, http_server: HttpServer
) -> None:
    async with client_for(http_server.url, running.api_key) as client:
        ids = {}
        for content in DECISIONS:
            saved = await call(client, "save_memory", content=content, category="architecture")
            ids[content] = saved["id"]
        for memory_id in ids.values():
            assert await running.wait_status(uuid.UUID(memory_id)) is MemoryStatus.ACTIVE
        for content, paraphrase in DECISIONS.items():
            found = await call(client, "search_memory", query=paraphrase, limit=1)
            assert found["results"][0]["id"] == ids[content]


@pytest.mark.parametrize("key", [None, "tm_wrong-key-entirely", "not-even-our-format"])
async def test_missing_or_wrong_key_gets_401(http_server: HttpServer, key: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient() as http:
        response = await http.post(http_server.url, headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert "memory" not in response.text.lower()


async def test_health_endpoints(http_server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=http_server.base) as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert health.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "temporal": "ok", "worker": "ok"}


async def test_foreign_host_header_is_refused(http_server: HttpServer, running: Stack) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(http_server.url, json={}, headers={
            "Host": "evil.example.com", "Authorization": f"Bearer {running.api_key}",
            "Accept": "application/json, text/event-stream"})
    assert response.status_code in (400, 403, 421)
