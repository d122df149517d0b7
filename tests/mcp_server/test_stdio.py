"""`team-memory serve --transport stdio` end to end, as Claude Code starts it."""

from __future__ import annotations

import os
import sys
import uuid

import asyncpg
import pytest
from mcp import Client, StdioServerParameters

from team_memory_core.models.memories import MemoryStatus
from tests.conftest import Stack
from tests.mcp_server.test_tools import call

pytestmark = pytest.mark.anyio


def stdio_server(running: Stack, api_key: str | None) -> StdioServerParameters:
    env = {**os.environ, "DATABASE_URL": running.settings.database_url or "",
           "TEMPORAL_ADDRESS": running.settings.temporal_target,
           "TEAM_MEMORY_DATA_DIR": str(running.settings.data_dir),
           "TEAM_MEMORY_TASK_QUEUE": running.settings.task_queue,
           "TEAM_MEMORY_LOG_LEVEL": "WARNING"}
    env.pop("TEAM_MEMORY_API_KEY", None)
    if api_key is not None:
        env["TEAM_MEMORY_API_KEY"] = api_key
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "team_memory", "serve", "--transport", "stdio"],
                                 env=env)


async def test_stdio_server_acts_with_the_key_from_the_environment(running: Stack) -> None:
    async with Client(stdio_server(running, running.api_key)) as client:
        saved = await call(client, "save_memory", content="Stdio clients share the same memory",
                           category="architecture")
        found = await call(client, "search_memory", query="do stdio clients share memory")
    assert found["results"][0]["id"] == saved["id"]
    assert await running.wait_status(uuid.UUID(saved["id"])) is MemoryStatus.ACTIVE
    memory = await running.service.get(running.principal, uuid.UUID(saved["id"]))
    assert memory.content == "Stdio clients share the same memory"


async def test_stdio_server_with_a_wrong_key_refuses_to_start(
    running: Stack, admin_pool: asyncpg.Pool
) -> None:
    key = "tm_not-a-real-key-at-all"
    with pytest.raises(Exception):  # noqa: B017 - the server exits; the client sees it closed
        async with Client(stdio_server(running, key)) as client:
            await client.list_tools()
    async with admin_pool.acquire() as conn:
        detail = await conn.fetchval(
            "SELECT detail FROM audit_log WHERE tenant_id IS NULL ORDER BY id DESC LIMIT 1")
    assert detail["transport"] == "stdio" and detail["prefix"] == key[:8]
