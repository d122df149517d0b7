"""The Temporal dev server's memory over a soak: does it level off?

python -m bench.temporal_soak [SECONDS] [CALLS_PER_S]: a fresh `team-memory up`; four MCP
clients share CALLS_PER_S calls (half saves, half searches) for SECONDS; the RSS of the
Temporal server `up` started is sampled every 15 s.
"""

from __future__ import annotations

import asyncio
import sys
import time
from itertools import count

from mcp import Client

from bench.corpus import memory_text, question
from bench.run import call, clients
from bench.stack import fresh_stack
from bench.stats import markdown_table

CLIENTS = 4
SAMPLE_EVERY_S = 15


async def soak(seconds: float, calls_per_s: float) -> str:
    with fresh_stack() as stack:
        temporal = stack.children["temporal"]
        numbers = count()
        started = time.monotonic()
        samples: list[list[str]] = []
        saved = 0

        async def client_loop(client: Client) -> None:
            nonlocal saved
            pause = CLIENTS / calls_per_s
            while time.monotonic() - started < seconds:
                i = next(numbers)
                if i % 2 == 0:
                    await call(client, "save_memory", content=memory_text(i))
                    saved += 1
                else:
                    await call(client, "search_memory", query=question(i))
                await asyncio.sleep(pause)

        async def sampler() -> None:
            while True:
                elapsed = time.monotonic() - started
                rss = temporal.memory_info().rss / 2**20
                samples.append([f"{elapsed:.0f}", f"{rss:.0f}", str(saved)])
                if elapsed >= seconds:
                    return
                await asyncio.sleep(SAMPLE_EVERY_S)

        async with clients(stack.mcp_url, stack.api_key, CLIENTS) as mcp:
            await asyncio.gather(sampler(), *(client_loop(c) for c in mcp))
        return markdown_table(["Seconds", "Temporal RSS (MiB)", "Saves so far"], samples)


if __name__ == "__main__":
    print(asyncio.run(soak(float(sys.argv[1]) if len(sys.argv) > 1 else 300,
                           float(sys.argv[2]) if len(sys.argv) > 2 else 12)))
