"""One authenticator for every HTTP route: the same 401 and an audit row for a missing, wrong,
revoked or expired key, and the per-key rate limit's 429, on every route of the app but the
public ones. The routes come from the app's own route table: a route added without being
listed here, as public or with a request to send it, fails the first test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.routing import Route

from mcp_server.app import http_app
from team_memory_core.tenants import create_key, revoke_key
from tests.conftest import Stack
from tests.support.http import serving_http

pytestmark = pytest.mark.anyio

LIMIT = 4
MCP_INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t",
                                                                        "version": "1"}}}
UNKNOWN = uuid.uuid4()
# HEAD answers as GET does; OPTIONS is the CORS preflight, which carries no credentials.
IMPLIED_METHODS = {"HEAD", "OPTIONS"}
# A route taking every method (the MCP transport), as (path, ANY_METHOD).
ANY_METHOD = "*"
# Anyone may call these: the probes, the browser's page (its script asks for a key), the
# codec's sign-in form and sign-out, and the MCP SDK's OAuth resource metadata.
PUBLIC = {
    ("/healthz", "GET"), ("/readyz", "GET"), ("/browser", "GET"),
    ("/codec/login", "GET"), ("/codec/logout", "POST"),
    ("/.well-known/oauth-protected-resource", "GET"),
}


@dataclass(frozen=True)
class Call:
    """A request to a route that is valid once authenticated, and how it sends the key."""

    route: str  # the path template, as in the route table
    method: str
    path: str
    body: dict[str, Any] | None = None
    # The status a valid key gets (a gated route with an unknown id answers 404 past the gate).
    admitted: int = 200
    key_in_form: str | None = None  # the form field of a sign-in, instead of a bearer header
    table_method: str = ""  # the method as the route table lists it, when not ``method``

    @property
    def entry(self) -> tuple[str, str]:
        return self.route, self.table_method or self.method

    def request(self, key: str | None) -> dict[str, Any]:
        headers = {"Accept": "application/json, text/event-stream"}
        if self.key_in_form is not None:
            return {"method": self.method, "url": self.path, "headers": headers,
                    "data": {self.key_in_form: key or ""}}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return {"method": self.method, "url": self.path, "headers": headers, "json": self.body}


CALLS = [
    Call("/mcp", "POST", "/mcp", MCP_INITIALIZE, table_method=ANY_METHOD),
    Call("/hooks/context", "POST", "/hooks/context", {"project": "github.com/acme/payments"}),
    Call("/hooks/events", "POST", "/hooks/events", {"events": [{
        "key": "tool:1", "session_id": "s1", "kind": "stop", "project": "p",
        "summary": "done", "at": "2026-01-01T00:00:00Z"}]}, admitted=202),
    Call("/api/whoami", "GET", "/api/whoami"),
    Call("/api/search", "GET", "/api/search?q=deploys"),
    Call("/api/memories/{memory_id}", "GET", f"/api/memories/{UNKNOWN}", admitted=404),
    Call("/api/memories/{memory_id}/forget", "POST", f"/api/memories/{UNKNOWN}/forget",
         {"reason": "outdated"}, admitted=404),
    Call("/api/review", "GET", "/api/review"),
    Call("/api/review/{memory_id}/approve", "POST", f"/api/review/{UNKNOWN}/approve",
         admitted=404),
    Call("/api/review/{memory_id}/reject", "POST", f"/api/review/{UNKNOWN}/reject",
         {"reason": "not for the team"}, admitted=404),
    Call("/codec/decode", "POST", "/codec/decode", {"payloads": []}),
    Call("/codec/login", "POST", "/codec/login", key_in_form="key"),
]
CALL_IDS = [f"{call.method} {call.route}" for call in CALLS]


def route_table(stack: Stack) -> set[tuple[str, str]]:
    """Every (path, method) the product's HTTP app answers."""
    entries: set[tuple[str, str]] = set()
    for route in http_app(stack.service).routes:
        assert isinstance(route, Route), route
        methods = (route.methods or {ANY_METHOD}) - IMPLIED_METHODS
        entries.update((route.path, method) for method in methods)
    return entries


@pytest.fixture
async def base(stack: Stack) -> AsyncIterator[str]:
    async with serving_http(stack, rate_limit_per_minute=LIMIT) as (url, _):
        yield url


async def _send(base: str, call: Call, key: str | None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.request(**call.request(key), timeout=30)


async def _denials(admin_pool: asyncpg.Pool) -> int:
    async with admin_pool.acquire() as conn:
        return int(await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'authenticate'"
            " AND outcome = 'denied'"))


async def test_every_route_is_public_or_tested_here(stack: Stack) -> None:
    tested = {call.entry for call in CALLS}
    assert not PUBLIC & tested
    assert route_table(stack) == PUBLIC | tested


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
async def test_missing_wrong_revoked_and_expired_keys_get_401_and_an_audit_row(
    stack: Stack, base: str, admin_pool: asyncpg.Pool, call: Call,
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
        response = await _send(base, call, key)
        answers.append((response.status_code, await _denials(admin_pool) - before))
        if call.key_in_form is None:
            assert response.headers.get("www-authenticate") == "Bearer"
    assert answers == [(401, 1)] * 5
    assert (await _send(base, call, stack.api_key)).status_code == call.admitted


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
async def test_the_per_key_rate_limit_answers_429_with_retry_after(
    stack: Stack, base: str, admin_pool: asyncpg.Pool, call: Call,
) -> None:
    key = (await create_key(admin_pool, stack.principal.tenant_name, name="busy")).secret
    statuses = [(await _send(base, call, key)).status_code for _ in range(LIMIT)]
    refused = await _send(base, call, key)
    assert statuses == [call.admitted] * LIMIT
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "rate limit exceeded" in refused.text
    # Another key of the same tenant is not held back.
    other = (await create_key(admin_pool, stack.principal.tenant_name, name="calm")).secret
    assert (await _send(base, call, other)).status_code == call.admitted
