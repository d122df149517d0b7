"""Search latency under an ingestion backlog: N acknowledged memories not embedded yet.

python -m bench.backlog_search [BACKLOG] [SEARCHES]: a fresh `team-memory up`, BACKLOG pending
rows written as a save writes them (with no workflow, so the worker leaves them pending), then
SEARCHES searches in process, one at a time, each with another question. Searches see pending
memories by meaning (read-your-writes), so each may embed some of them: the first search after
the backlog appears, and the ones after it, are reported apart.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.corpus import memory_text, question
from bench.stack import fresh_stack, in_process
from bench.stats import Table
from mcp_server.validation import prepare_memory
from team_memory_core.store.memories import insert_pending
from team_memory_core.store.pool import principal_tx


async def measure(backlog: int, searches: int) -> str:
    with fresh_stack() as stack:
        local = await in_process(stack)
        service, principal = local.service, local.principal
        async with principal_tx(local.pool, principal) as conn:
            for i in range(backlog):
                await insert_pending(conn, prepare_memory(service.settings, principal,
                                                          memory_text(i)), ())
        times = []
        for i in range(searches):
            started = time.perf_counter()
            await service.search(principal, question(i), limit=5)
            times.append(time.perf_counter() - started)
        await local.pool.close()
        table = Table()
        table.latency(f"first search, {backlog} memories pending", times[:1])
        table.latency(f"next {searches - 1} searches, same backlog", times[1:])
        return table.markdown()


if __name__ == "__main__":
    print(asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 500,
                              int(sys.argv[2]) if len(sys.argv) > 2 else 30)))
