"""While PostgreSQL or Temporal is down, every route says so and when to retry; then recovers.

A real `team-memory serve` process runs against a PostgreSQL and a Temporal server of the
test's own, which the test stops and starts again. Over HTTP, an outage is a 503 with
Retry-After naming the dependency (the key lookup in front of /mcp included), never a 500;
through MCP (in process, as over stdio) it is a tool error naming the dependency. Reads that do
not need the missing dependency keep being served. The server log holds no crash.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from mcp import Client, MCPError
from pydantic import SecretStr

from mcp_server.memories import MemoryService
from mcp_server.server import create_server
from team_memory import embedded
from team_memory_core.embedder import Embedder
from team_memory_core.settings import Settings
from team_memory_core.store.pool import create_pool
from team_memory_core.temporal import connect
from tests.conftest import Services, new_tenant
from tests.mcp_server.test_http import client_for
from tests.mcp_server.test_tools import call, call_error
from tests.processes import child_env, team_memory
from tests.support.faults import dedicated_postgres, dedicated_temporal

pytestmark = pytest.mark.anyio

RECOVERY_S = 60


@contextlib.contextmanager
def serving(settings: Settings, log: Path, **env: str) -> Iterator[str]:
    """`team-memory serve` over HTTP for ``settings``; yields its base URL."""
    with log.open("ab") as output, \
            team_memory("serve", "--transport", "http", env=child_env(settings, **env),
                        output=output) as server:
        embedded.wait_for_port(settings.mcp_port, 60, server, "the MCP server")
        yield f"http://127.0.0.1:{settings.mcp_port}"


def assert_no_crash_logged(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Exception in ASGI application" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def event(session: str) -> dict[str, Any]:
    return {"events": [{"key": f"tool:{uuid.uuid4().hex}", "session_id": session,
                        "kind": "tool", "project": "shop", "tool": "Bash",
                        "files": ["a.py"], "summary": "ran the tests",
                        "at": datetime.now(UTC).isoformat()}]}


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}


async def every_route(http: httpx.AsyncClient, memory_id: str) -> dict[str, httpx.Response]:
    """One request to each route behind the key check."""
    mcp_headers = {"Accept": "application/json, text/event-stream"}
    return {
        "/mcp": await http.post("/mcp", headers=mcp_headers,
                                json=tool_call("search_memory", {"query": "deploys"})),
        "/hooks/events": await http.post("/hooks/events", json=event("s1")),
        "/hooks/context": await http.post("/hooks/context", json={"project": "shop"}),
        "/api/whoami": await http.get("/api/whoami"),
        "/api/search": await http.get("/api/search", params={"q": "deploys"}),
        "/api/memories": await http.get(f"/api/memories/{memory_id}"),
        "/api/forget": await http.post(f"/api/memories/{memory_id}/forget",
                                       json={"reason": "obsolete"}),
        "/codec/decode": await http.post("/codec/decode", json={"payloads": []}),
    }


def assert_retry_later(response: httpx.Response, dependency: str, name: str) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert body["dependency"] == dependency.lower()
    assert f"({dependency}) is not answering" in body["error"]
    assert "retry in 5 seconds" in body["error"]


async def wait_until_ok(http: httpx.AsyncClient, path: str) -> None:
    with anyio.fail_after(RECOVERY_S):
        while (await http.get(path, params={"q": "deploys"})).status_code != 200:
            await anyio.sleep(0.5)


@contextlib.asynccontextmanager
async def in_process_service(settings: Settings, embedder: Embedder,
                             url: str) -> AsyncIterator[MemoryService]:
    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        client = await connect(settings, pool)
        yield MemoryService(settings=settings, pool=pool, temporal=client, embedder=embedder)
    finally:
        await pool.close()


# --- PostgreSQL down ------------------------------------------------------------------------


async def test_postgres_down_answers_retry_later_everywhere_then_recovers(
    services: Services, embedder: Embedder, tmp_path: Path
) -> None:
    async with dedicated_postgres(services) as (postgres, base_settings):
        settings = base_settings.model_copy(update={"mcp_port": embedded.free_port()})
        admin = await create_pool(postgres.admin_url, min_size=1, max_size=2)
        try:
            principal, key = await new_tenant(admin)
        finally:
            await admin.close()
        log = tmp_path / "serve.log"
        with serving(settings, log) as base:
            async with in_process_service(settings, embedder, postgres.app_url) as service, \
                    Client(create_server(service, default_principal=principal)) as mcp, \
                    httpx.AsyncClient(base_url=base, timeout=30,
                                      headers={"Authorization": f"Bearer {key}"}) as http:
                saved = await call(mcp, "save_memory", content="Deploys go out on Tuesdays")
                await anyio.to_thread.run_sync(postgres.halt)
                try:
                    answers = await every_route(http, saved["id"])
                    assert (await http.get("/healthz")).status_code == 200
                    await assert_tools_name_postgres(mcp, saved["id"])
                finally:
                    await anyio.to_thread.run_sync(postgres.resume)
                for route, answer in answers.items():
                    assert_retry_later(answer, "PostgreSQL", route)
                # Recovery needs nobody: the pools reconnect on their own.
                await wait_until_ok(http, "/api/search")
                async with client_for(f"{base}/mcp", key) as remote:
                    again = await call(remote, "save_memory", content="Deploys are frozen "
                                       "in December")
                assert (await call(mcp, "memory_status", id=again["id"]))["status"] == "pending"
        assert_no_crash_logged(log)


async def assert_tools_name_postgres(mcp: Client, memory_id: str) -> None:
    """Every tool, resource and the prompt: an error naming PostgreSQL, saying when to retry
    (and, for a write, that it is not confirmed)."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("save_memory", {"content": "Releases need two approvals"}),
        ("search_memory", {"query": "deploys"}),
        ("get_memory", {"id": memory_id}),
        ("get_memories", {"ids": [memory_id]}),
        ("forget_memory", {"id": memory_id, "reason": "obsolete"}),
        ("purge_memory", {"id": memory_id, "reason": "personal data"}),
        ("memory_status", {"id": memory_id}),
    ]
    for tool, arguments in calls:
        error = await call_error(mcp, tool, **arguments)
        assert "the memory database (PostgreSQL) is not answering" in error, (tool, error)
        assert error.endswith("retry in 5 seconds"), (tool, error)
    assert "the save was not confirmed" in await call_error(mcp, "save_memory", content="x y")
    for uri in ("memory://working_set", "memory://recent_summary", "memory://manifesto",
                f"memory://memories/{memory_id}"):
        with pytest.raises(MCPError, match=r"\(PostgreSQL\) is not answering"):
            await mcp.read_resource(uri)
    with pytest.raises(MCPError, match=r"\(PostgreSQL\) is not answering"):
        await mcp.get_prompt("manifesto", {})


# --- Temporal down --------------------------------------------------------------------------


async def test_temporal_down_answers_retry_later_and_keeps_serving_reads(
    services: Services, admin_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    with dedicated_temporal(tmp_path) as temporal:
        settings = services.settings(temporal_address=temporal.address,
                                     mcp_port=embedded.free_port(),
                                     anthropic_api_key=SecretStr("sk-test"))
        principal, key = await new_tenant(admin_pool)
        log = tmp_path / "serve.log"
        with serving(settings, log, ANTHROPIC_API_KEY="sk-test") as base:
            async with client_for(f"{base}/mcp", key) as mcp, \
                    httpx.AsyncClient(base_url=base, timeout=30,
                                      headers={"Authorization": f"Bearer {key}"}) as http:
                saved = await call(mcp, "save_memory", content="Deploys go out on Tuesdays")
                workflow_id = (await call(mcp, "memory_status", id=saved["id"]))["workflow_id"]
                assert (await http.post("/hooks/events", json=event("s1"))).status_code == 202
                await anyio.to_thread.run_sync(temporal.stop)
                try:
                    # Reads need no Temporal: served as usual.
                    found = await call(mcp, "search_memory", query="when do deploys go out")
                    searched = await http.get("/api/search", params={"q": "deploys"})
                    context = await http.post("/hooks/context", json={"project": "shop"})
                    captured = await http.post("/hooks/events", json=event("s2"))
                    purge = await call_error(mcp, "purge_memory", id=saved["id"],
                                             reason="personal data")
                    consolidate = await anyio.to_thread.run_sync(
                        lambda: consolidate_now(settings, principal.tenant_name))
                finally:
                    await anyio.to_thread.run_sync(temporal.start)
                assert_retry_later(captured, "Temporal", "/hooks/events")
                assert "the events were not confirmed" in captured.json()["error"]
                assert "the workflow engine (Temporal) did not delete" in purge
                assert "purge again" in purge
                assert consolidate.returncode == 1
                assert "the workflow engine (Temporal) is not answering" in consolidate.stderr
                assert [hit["id"] for hit in found["results"]] == [saved["id"]]
                assert searched.status_code == 200 and context.status_code == 200
                # Recovery needs nobody: the client reconnects on its own.
                with anyio.fail_after(RECOVERY_S):
                    while (await http.post("/hooks/events", json=event("s3"))).status_code \
                            != 202:
                        await anyio.sleep(0.5)
                purged = await call(mcp, "purge_memory", id=saved["id"], reason="personal data")
                assert purged["workflows_deleted"] == [workflow_id]
        assert_no_crash_logged(log)


def consolidate_now(settings: Settings, tenant: str) -> subprocess.CompletedProcess[str]:
    """`team-memory consolidate` (the manual trigger) as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "team_memory", "consolidate", "--project", "shop", "--tenant",
         tenant], env=child_env(settings), capture_output=True, text=True, timeout=120,
        check=False)
