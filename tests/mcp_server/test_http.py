"""The MCP server over real streamable HTTP, with bearer API keys."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import asyncpg
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from team_memory_core.models.memories import MemoryStatus
from team_memory_core.store.pool import tenant_tx
from team_memory_core.tenants import create_key
from tests.conftest import Stack
from tests.mcp_server.test_tools import DECISIONS, call
from tests.support.cli import cli
from tests.support.http import serving_http

pytestmark = pytest.mark.anyio


@dataclass
class HttpServer:
    url: str
    base: str


@pytest.fixture
async def http_server(running: Stack) -> AsyncIterator[HttpServer]:
    async with serving_http(running) as (base, _):
        yield HttpServer(url=f"{base}/mcp", base=base)


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


async def _post(url: str, key: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(url, headers={
            "Accept": "application/json, text/event-stream", "Authorization": f"Bearer {key}",
        }, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}})


async def test_revoked_key_gets_401_at_once_and_is_audited(
    running: Stack, http_server: HttpServer, admin_pool: asyncpg.Pool
) -> None:
    issued = await create_key(admin_pool, running.principal.tenant_name, name="to-revoke")
    assert (await _post(http_server.url, issued.secret)).status_code == 200
    revoked = await anyio.to_thread.run_sync(cli, running, "key", "revoke", str(issued.key_id))
    assert revoked.returncode == 0, revoked.stderr
    after = await _post(http_server.url, issued.secret)
    wrong = await _post(http_server.url, "tm_" + "x" * 32)
    assert after.status_code == wrong.status_code == 401
    assert after.text == wrong.text
    assert after.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")
    listed = await anyio.to_thread.run_sync(cli, running, "audit", "--tenant",
                                            running.principal.tenant_name)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "authenticate" in lines[0] and "denied" in lines[0] and "revoked key" in lines[0]
    assert issued.prefix in lines[0] and issued.secret not in listed.stdout
    assert "key.revoke" in lines[1] and str(issued.key_id) in lines[1]
    assert any("key.create" in line and str(issued.key_id) in line for line in lines)


async def test_expired_key_gets_the_same_401_and_is_listed_and_audited(
    running: Stack, http_server: HttpServer, admin_pool: asyncpg.Pool
) -> None:
    issued = await create_key(admin_pool, running.principal.tenant_name, name="expiring",
                              expires_at=datetime.now(UTC) + timedelta(days=1))
    assert (await _post(http_server.url, issued.secret)).status_code == 200
    async with admin_pool.acquire() as conn:  # its day has passed
        await conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 minute'"
                           " WHERE id = $1", issued.key_id)
    after = await _post(http_server.url, issued.secret)
    wrong = await _post(http_server.url, "tm_" + "x" * 32)
    assert after.status_code == wrong.status_code == 401
    assert (after.text, after.headers.get("www-authenticate")) == (
        wrong.text, wrong.headers.get("www-authenticate"))
    listed = await anyio.to_thread.run_sync(cli, running, "key", "list", "--tenant",
                                            running.principal.tenant_name)
    audit = await anyio.to_thread.run_sync(cli, running, "audit", "--tenant",
                                           running.principal.tenant_name, "--limit", "1")
    assert any(str(issued.key_id) in line and "  expired " in line
               for line in listed.stdout.splitlines()), listed.stdout
    assert "authenticate" in audit.stdout and "expired key" in audit.stdout


async def test_unknown_key_is_audited_without_tenant_and_without_the_secret(
    http_server: HttpServer, admin_pool: asyncpg.Pool
) -> None:
    secret = "tm_" + uuid.uuid4().hex
    assert (await _post(http_server.url, secret)).status_code == 401
    async with admin_pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE tenant_id IS NULL ORDER BY id DESC LIMIT 1")
        everything = await conn.fetchval("SELECT string_agg(audit_log::text, ' ') FROM audit_log")
    assert row["action"] == "authenticate" and row["outcome"] == "denied"
    assert row["detail"] == {"reason": "unknown key", "prefix": secret[:8], "transport": "http"}
    assert secret not in everything and secret[8:] not in everything


async def test_read_only_key_over_http_reads_but_cannot_write(
    running: Stack, http_server: HttpServer, admin_pool: asyncpg.Pool
) -> None:
    reader = await create_key(admin_pool, running.principal.tenant_name, read_only=True)
    async with client_for(http_server.url, running.api_key) as client:
        saved = await call(client, "save_memory", content="Readers may search this decision")
    async with client_for(http_server.url, reader.secret) as client:
        found = await call(client, "search_memory", query="decision readers may search")
        refused = await client.call_tool("save_memory", {"content": "a reader's write"})
        forget = await client.call_tool("forget_memory", {"id": saved["id"], "reason": "x"})
    assert found["results"][0]["id"] == saved["id"]
    assert refused.is_error and "read-only" in refused.content[0].text  # type: ignore[union-attr]
    assert forget.is_error and "read-only" in forget.content[0].text  # type: ignore[union-attr]
    async with tenant_tx(running.pool, running.principal.tenant_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM memories") == 1
        denied = await conn.fetch("SELECT action, key_id FROM audit_log WHERE outcome = 'denied'"
                                  " ORDER BY id")
    assert [(r["action"], r["key_id"]) for r in denied] == [("save", reader.key_id),
                                                            ("forget", reader.key_id)]
