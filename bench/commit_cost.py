"""PostgreSQL's CPU per ingestion commit: the worker's activities against a throwaway cluster.

python -m bench.commit_cost [--existing 1000] [--memories 300] [--rounds 2] [--toasted]

Starts an embedded PostgreSQL in a temporary dir, migrates it, fills one project with
``--existing`` active memories (the bench corpus, really embedded), then ingests
``--memories`` more at a time through the activities themselves, alternating the two paths
IngestMemory has: one step (``ingest_memory``: neighbours, decision and commit in one
transaction, the vector written with the status) and three (``embed_memory``,
``decide_memory``, ``commit_memory``, as workflows started before the one-step version run).
It prints the PostgreSQL backend's CPU (from /proc) and this process's CPU per memory: what a
commit costs the database and the worker's side of it, without Temporal or the model (texts
are embedded before the clock starts). ``--toasted`` puts the default TOAST target back (the
vectors then live out of line, as before sql/012).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np

from activities.ingest import IngestActivities
from bench.corpus import memory_text
from team_memory.embedded import start_postgres
from team_memory_core.embedder import BatchingEmbedder, LocalEmbedder
from team_memory_core.models.memories import Category, IngestInput, content_hash
from team_memory_core.rules.injection import flags_of
from team_memory_core.settings import Settings
from team_memory_core.store import memories
from team_memory_core.store.migrate import migrate
from team_memory_core.store.pool import create_pool, tenant_tx
from team_memory_core.tenants import ensure_tenant


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class KnownVectors:
    """The model's vectors, computed before the clock starts (an Embedder)."""

    vectors: dict[str, np.ndarray]
    name: str = "all-MiniLM-L6-v2"
    dim: int = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.vstack([self.vectors[text] for text in texts])


def items(tenant: uuid.UUID, first: int, count: int) -> list[IngestInput]:
    texts = [memory_text(i) for i in range(first, first + count)]
    return [IngestInput(memory_id=uuid.uuid4(), tenant_id=tenant, project="bench", content=text,
                        category=Category.GENERAL, importance=1, tags=[],
                        content_hash=content_hash(text), occurred_at=datetime.now(UTC))
            for text in texts]


async def ingest(activities: IngestActivities, item: IngestInput, one_step: bool) -> None:
    if one_step:
        await activities.ingest_memory(item)
        return
    await activities.embed_memory(item)
    await activities.commit_memory(item, await activities.decide_memory(item))


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="team-memory-commit-cost-"))
    postgres = start_postgres(root / "pg")
    try:
        settings = Settings(data_dir=root, database_url=postgres.app_url,
                            database_admin_url=postgres.admin_url)
        await migrate(postgres.admin_url, settings)
        admin = await create_pool(postgres.admin_url, min_size=1, max_size=1)
        if args.toasted:
            await admin.execute("ALTER TABLE memories RESET (toast_tuple_target)")
        tenant = await ensure_tenant(admin, "bench")
        pool = await create_pool(postgres.app_url, min_size=1, max_size=1)
        try:
            await measure(args, settings, pool, tenant)
        finally:
            await pool.close()
            await admin.close()
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


async def measure(args: argparse.Namespace, settings: Settings, pool: asyncpg.Pool,
                  tenant: uuid.UUID) -> None:
    total = args.existing + 2 * args.rounds * args.memories
    planned = items(tenant, 0, total)
    model = LocalEmbedder(Path(tempfile.gettempdir()) / "team-memory-bench-models",
                          settings.embedding_model)
    texts = [item.content for item in planned]
    known = KnownVectors(dict(zip(texts, model.embed(texts), strict=True)))
    activities = IngestActivities(pool=pool, settings=settings,
                                  embedder=BatchingEmbedder(known, window_ms=0, max_batch=1))
    for item in planned:  # every memory is acknowledged (pending) before any is ingested
        async with tenant_tx(pool, tenant) as conn:
            await memories.insert_pending(conn, item, flags_of(item.content))
    for item in planned[:args.existing]:
        await activities.ingest_memory(item)
    backend = await pool.fetchval("SELECT pg_backend_pid()")
    batches = iter(range(args.existing, total, args.memories))
    print("| path | PostgreSQL backend CPU per memory | worker side (this process) |")
    print("| --- | --- | --- |")
    for _ in range(args.rounds):
        for one_step in (True, False):
            batch = planned[next(batches):][:args.memories]
            database, worker = process_cpu_seconds(backend), time.process_time()
            for item in batch:
                await ingest(activities, item, one_step)
            database = process_cpu_seconds(backend) - database
            worker = time.process_time() - worker
            print(f"| {'one step' if one_step else 'three steps'} | "
                  f"{database * 1000 / len(batch):.2f} ms | {worker * 1000 / len(batch):.2f} ms |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_cost", description=__doc__)
    parser.add_argument("--existing", type=int, default=1000,
                        help="active memories in the project before measuring")
    parser.add_argument("--memories", type=int, default=300, help="memories per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--toasted", action="store_true",
                        help="the default TOAST target (vectors out of line, before sql/012)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
