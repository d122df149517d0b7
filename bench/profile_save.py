"""Where a save's time goes: the same save measured layer by layer on a fresh stack.

python -m bench.profile_save [N]: sequential, one client, N samples per layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from bench.corpus import memory_text
from bench.run import call, client_for
from bench.stack import start_stack
from bench.stats import Table
from mcp_server.service import MemoryService
from team_memory import queries
from team_memory.db import create_pool, tenant_tx
from team_memory.embedder import LocalEmbedder
from team_memory.models import Category, IngestInput, Principal, content_hash
from team_memory.redaction import redact
from team_memory.settings import Settings
from team_memory.temporal import connect
from team_memory.tenants import authenticate


async def timed(samples: int, one: Callable[[int], Awaitable[object]]) -> list[float]:
    times = []
    for i in range(samples):
        started = time.perf_counter()
        await one(i)
        times.append(time.perf_counter() - started)
    return times


async def profile(samples: int) -> str:
    stack = start_stack()
    try:
        settings = Settings(data_dir=stack.data_dir, database_url=stack.app_url,
                            temporal_address=stack.temporal_address)
        pool = await create_pool(stack.app_url, min_size=2, max_size=4)
        client = await connect(settings, pool)
        service = MemoryService(settings=settings, pool=pool, temporal=client,
                                embedder=LocalEmbedder(stack.data_dir / "models", "minilm"))
        principal = await authenticate(pool, stack.api_key)
        assert principal is not None
        table = Table()
        table.latency("redact (regexes and entropy scan)",
                      await timed(samples, lambda i: asyncio.sleep(0, redact(_text("r", i)))))
        table.latency("API key lookup (one query, per HTTP request)",
                      await timed(samples, lambda i: authenticate(pool, stack.api_key)))
        table.latency("tenant transaction + insert pending row (rolled back)",
                      await timed(samples, lambda i: _insert(pool, principal, _text("i", i))))
        table.latency("Temporal start_workflow alone (queue without a worker)",
                      await timed(samples, lambda i: client.start_workflow(
                          "IngestMemory", id=f"profile-{uuid.uuid4()}",
                          task_queue="profile-no-worker")))
        table.latency("MemoryService.save in process (all of the above but auth)",
                      await timed(samples, lambda i: service.save(principal, _text("s", i))))
        async with client_for(stack.mcp_url, stack.api_key) as mcp:
            table.latency("save_memory over streamable HTTP (+ MCP, auth, JSON)",
                          await timed(samples, lambda i: call(mcp, "save_memory",
                                                              content=_text("h", i))))
        await pool.close()
        return table.markdown()
    finally:
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)


def _text(tag: str, i: int) -> str:
    return memory_text(hash((tag, i)) % 10**9)


class _Rollback(Exception):
    pass


async def _insert(pool: asyncpg.Pool, principal: Principal, text: str) -> None:
    item = IngestInput(memory_id=uuid.uuid4(), tenant_id=principal.tenant_id, project="p",
                       content=text, category=Category.GENERAL, importance=1, tags=[],
                       content_hash=content_hash(text), occurred_at=datetime.now(UTC))
    with contextlib.suppress(_Rollback):
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await queries.insert_pending(conn, item)
            raise _Rollback


if __name__ == "__main__":
    print(asyncio.run(profile(int(sys.argv[1]) if len(sys.argv) > 1 else 100)))
