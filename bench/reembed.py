"""A re-embed of N memories while searches run.

python -m bench.reembed [--memories 10000] [--searchers 2] [--dim 128] [--page-size 200]:
a fresh `team-memory up` (its worker runs the ReembedMemories workflow), N memories bulk-loaded
as ingestion leaves them (bench/bulk.py), then the re-embed to the bundled model cut to
``--dim`` dimensions (the same model cost per text as today's: what a re-embed to a model of
that size costs), while ``--searchers`` loops search back to back in this process. Every
search asks for the text of a stored memory: a failed search (an error) must not happen, and
the memory should be in the top 5 with either model (counted).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

from bench.bulk import _OFFSET, BulkLoader
from bench.corpus import memory_text
from bench.stack import InProcess, fresh_stack, in_process
from bench.stats import Table
from mcp_server.search.recall import SNIPPET_CHARS
from team_memory_core.embedder import BUNDLED_MODEL, EmbeddingModel, LocalEmbedder
from team_memory_core.models.reembed import ReembedProgress
from team_memory_core.reembed import start_reembed
from team_memory_core.rules.text import one_line
from team_memory_core.settings import Settings


@dataclass
class Searching:
    local: InProcess
    memories: int
    times: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    async def one(self, i: int) -> None:
        """Search for the i-th stored text (spread over the corpus); it must come back in the
        top 5 (near copies of a template may outrank it by importance, not by more)."""
        text = memory_text(_OFFSET + (i * 7919) % self.memories)
        started = time.perf_counter()
        try:
            hits = await self.local.service.search(self.local.principal, text, limit=5,
                                                   project="default")
        except Exception as error:  # every failure counts, whatever it is
            self.failed.append(f"{type(error).__name__}: {error}")
            return
        self.times.append(time.perf_counter() - started)
        if one_line(text, SNIPPET_CHARS) not in [hit.snippet for hit in hits]:
            self.missed.append(text)

    async def until(self, seed: int, done: asyncio.Event) -> None:
        i = seed
        while not done.is_set():
            await self.one(i)
            i += 1000


async def measure(args: argparse.Namespace) -> str:
    table = Table()
    with fresh_stack() as stack:
        # The stack's database holds the configured model's vectors (a new database's).
        model = LocalEmbedder(stack.data_dir / "models", Settings().embedding_model)
        loader = BulkLoader(stack.postgres_url(), model, args.memories)
        started = time.perf_counter()
        await loader.fill("local", args.memories)
        table.add("bulk load (all texts really embedded)",
                  f"{args.memories} memories in {time.perf_counter() - started:.0f} s")
        local = await in_process(stack)
        searching = Searching(local, args.memories)
        for i in range(50):
            await searching.one(i)
        before = list(searching.times)
        searching.times.clear()
        done = asyncio.Event()
        target = EmbeddingModel("local", BUNDLED_MODEL, args.dim)
        started = time.perf_counter()
        handle = await start_reembed(local.client, local.service.settings, target,
                                     page_size=args.page_size)
        loops = [asyncio.create_task(searching.until(seed, done))
                 for seed in range(1, args.searchers + 1)]
        final: ReembedProgress = await handle.result()
        elapsed = time.perf_counter() - started
        done.set()
        await asyncio.gather(*loops)
        table.add(f"re-embed of {args.memories} memories to {target}",
                  f"{elapsed:.0f} s ({final.embedded} vectors, {final.passes} passes, "
                  f"{final.pages} pages, {final.switch_attempts} switch attempt(s))")
        table.latency("search before the re-embed (one at a time)", before)
        table.latency(f"search during it ({args.searchers} loops)", searching.times)
        table.add("slowest search during it (the switch holds the table lock)",
                  f"{1000 * max(searching.times, default=0):.0f} ms")
        table.add("failed searches (before and during)", str(len(searching.failed)), "0",
                  not searching.failed)
        table.add("searches whose memory was not in the top 5 (before and during)",
                  str(len(searching.missed)))
        for failure in searching.failed[:5]:
            print(f"  failed: {failure}", flush=True)
        await local.pool.close()
    return table.markdown()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reembed", description=__doc__)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--searchers", type=int, default=2)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--page-size", type=int, default=200)
    return parser.parse_args()


if __name__ == "__main__":
    print(asyncio.run(measure(parse())))
