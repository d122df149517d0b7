"""MemoryService's write path beyond what the tools show (tests/mcp_server/test_tools.py)."""

from __future__ import annotations

import asyncio

import anyio
import asyncpg
import pytest

from mcp_server.memories import MemoryService
from tests.conftest import Stack

pytestmark = pytest.mark.anyio


async def waiting_for_the_outbox(admin_pool: asyncpg.Pool) -> int:
    return int(await admin_pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE relation = 'ingest_outbox'::regclass"
        " AND NOT granted"))


async def test_saves_beyond_the_concurrency_wait_their_turn_and_all_land(
    stack: Stack, admin_pool: asyncpg.Pool
) -> None:
    settings = stack.settings.model_copy(update={"save_concurrency": 2})
    service = MemoryService(settings=settings, pool=stack.pool, temporal=stack.client,
                            embedder=stack.embedder)
    async with admin_pool.acquire() as blocker, blocker.transaction():
        # Every save's transaction stops at its outbox row until this transaction ends.
        await blocker.execute("LOCK TABLE ingest_outbox IN EXCLUSIVE MODE")
        saves = [asyncio.create_task(service.save(stack.principal, f"Saves take turns ({i})"))
                 for i in range(5)]
        with anyio.fail_after(30):
            while await waiting_for_the_outbox(admin_pool) < 2:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # time for a third transaction, were one let in
        assert await waiting_for_the_outbox(admin_pool) == 2
        assert not any(save.done() for save in saves)
    with anyio.fail_after(30):
        saved = await asyncio.gather(*saves)
    assert len({result.id for result in saved}) == 5
    assert not any(result.already_saved for result in saved)
