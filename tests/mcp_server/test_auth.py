"""One authenticator for every HTTP route: the same 401 and an audit row for a missing, wrong,
revoked or expired key, and the per-key rate limit's 429, on /mcp, /hooks/*, /api/* and
/codec/decode alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from mcp_server.app import http_app
from mcp_server.service import MemoryService
from team_memory import embedded
from team_memory_core.tenants import create_key, revoke_key
from tests.conftest import Stack

pytestmark = pytest.mark.anyio

LIMIT = 4
MCP_INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t",
                                                                        "version": "1"}}}
# Each route with a request that is valid once authenticated: (method, path, JSON body).
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/mcp", MCP_INITIALIZE),
    ("POST", "/hooks/context", {"project": "github.com/acme/payments"}),
    ("POST", "/hooks/events", {"events": [{
        "key": "tool:1", "session_id": "s1", "kind": "stop", "project": "p",
        "summary": "done", "at": "2026-01-01T00:00:00Z"}]}),
    ("GET", "/api/whoami", None),
    ("GET", "/api/search?q=deploys", None),
    ("POST", "/codec/decode", {"payloads": []}),
]
ROUTE_IDS = [path.split("?")[0] for _, path, _ in ROUTES]


@pytest.fixture
async def base(stack: Stack) -> AsyncIterator[str]:
    port = embedded.free_port()
    settings = stack.settings.model_copy(update={"mcp_port": port,
                                                 "rate_limit_per_minute": LIMIT})
    service = MemoryService(settings=settings, pool=stack.pool, temporal=stack.client,
                            embedder=stack.embedder)
    server = uvicorn.Server(uvicorn.Config(http_app(service), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def _send(base: str, route: tuple[str, str, dict[str, Any] | None],
                key: str | None) -> httpx.Response:
    method, path, body = route
    headers = {"Accept": "application/json, text/event-stream"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient() as http:
        return await http.request(method, base + path, headers=headers, json=body, timeout=30)


async def _denials(admin_pool: asyncpg.Pool) -> int:
    async with admin_pool.acquire() as conn:
        return int(await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'authenticate'"
            " AND outcome = 'denied'"))


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_missing_wrong_revoked_and_expired_keys_get_401_and_an_audit_row(
    stack: Stack, base: str, admin_pool: asyncpg.Pool,
    route: tuple[str, str, dict[str, Any] | None],
) -> None:
    tenant = stack.principal.tenant_name
    revoked = await create_key(admin_pool, tenant, name="revoked")
    await revoke_key(admin_pool, revoked.key_id)
    expired = await create_key(admin_pool, tenant, name="expired",
                               expires_at=datetime.now(UTC) - timedelta(seconds=1))
    answers = []
    for key in (None, "tm_" + uuid.uuid4().hex, "not-even-our-format", revoked.secret,
                expired.secret):
        before = await _denials(admin_pool)
        response = await _send(base, route, key)
        answers.append((response.status_code, response.headers.get("www-authenticate"),
                        await _denials(admin_pool) - before))
    assert answers == [(401, "Bearer", 1)] * 5
    assert (await _send(base, route, stack.api_key)).status_code < 400


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_the_per_key_rate_limit_answers_429_with_retry_after(
    stack: Stack, base: str, admin_pool: asyncpg.Pool,
    route: tuple[str, str, dict[str, Any] | None],
) -> None:
    key = (await create_key(admin_pool, stack.principal.tenant_name, name="busy")).secret
    statuses = [(await _send(base, route, key)).status_code for _ in range(LIMIT)]
    refused = await _send(base, route, key)
    assert all(status < 400 for status in statuses), statuses
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "rate limit exceeded" in refused.json()["error"]
    # Another key of the same tenant is not held back.
    other = (await create_key(admin_pool, stack.principal.tenant_name, name="calm")).secret
    assert (await _send(base, route, other)).status_code < 400
