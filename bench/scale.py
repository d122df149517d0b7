"""Search latency at scale: N memories in one project of one tenant (issue 7 target:
p50 <= 15 ms, p99 <= 60 ms at 100k).

    python bench/scale.py LOCOMO.json --rows 100000 [--database-url ... --admin-url ...]

Texts are LoCoMo turns (realistic word frequencies; used only as load, never stored in the
repository), repeated with a suffix so every row is distinct, grouped in sessions of 20 turns
sharing a timestamp; vectors are the real embeddings of the turns plus small noise (embedding
100k texts on 2 cores would take half an hour and measure nothing about search). Queries are
the LoCoMo questions, embedded by the service as in production. Without URLs it starts a
throwaway embedded PostgreSQL. Bulk loading writes rows directly (bench-only SQL, not the
application's) as `active` memories.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np

from mcp_server.memories import MemoryService
from team_memory import embedded
from team_memory import locomo as evaluation
from team_memory_core.embedder import LocalEmbedder
from team_memory_core.models.memories import content_hash
from team_memory_core.models.principal import Principal
from team_memory_core.settings import Settings
from team_memory_core.store.migrate import migrate
from team_memory_core.store.pool import create_pool, tenant_tx
from team_memory_core.tenants import ensure_tenant

INSERT = """
INSERT INTO memories (id, tenant_id, project, content, category, content_hash, embedding,
                      status, occurred_at)
SELECT id, $2, $3, content, 'general', hash, embedding::vector, 'active', occurred_at
FROM unnest($1::uuid[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
     AS r (id, content, hash, embedding, occurred_at)
"""


async def load(pool: asyncpg.Pool, tenant_id: uuid.UUID, project: str, texts: list[str],
               vectors: np.ndarray, rows: int, batch: int = 2000) -> None:
    rng = np.random.default_rng(0)
    start = datetime(2022, 1, 1, tzinfo=UTC)
    done = 0
    while done < rows:
        n = min(batch, rows - done)
        picks = [(done + i) % len(texts) for i in range(n)]
        noisy = vectors[picks] + rng.normal(0, 0.01, (n, vectors.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        contents = [f"{texts[p]} (#{done + i})" for i, p in enumerate(picks)]
        async with tenant_tx(pool, tenant_id) as conn:
            await conn.execute(
                INSERT, [uuid.uuid4() for _ in range(n)], tenant_id, project, contents,
                [content_hash(c) for c in contents],
                ["[" + ",".join(f"{x:.6f}" for x in v) + "]" for v in noisy],
                [start + timedelta(hours=(done + i) // 20) for i in range(n)])
        done += n
        print(f"\rloaded {done}/{rows}", end="", flush=True)
    print()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(service: MemoryService, principal: Principal, project: str,
                  questions: list[str]) -> dict[str, float]:
    for q in questions[:20]:
        await service.search(principal, q, limit=10, project=project)
    latencies = []
    for q in questions:
        started = time.perf_counter()
        await service.search(principal, q, limit=10, project=project)
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99), "n": len(latencies)}


async def run(args: argparse.Namespace, admin_url: str, app_url: str, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, database_url=app_url, database_admin_url=admin_url)
    await migrate(admin_url, settings)
    conversations = evaluation.load(args.locomo)
    texts = [t.content for c in conversations for t in c.turns]
    questions = [q.text for c in conversations for q in c.questions]
    embedder = LocalEmbedder(data_dir / "models", settings.embedding_model)
    vectors = embedder.embed(texts)
    admin = await create_pool(admin_url, min_size=1, max_size=2)
    pool = await create_pool(app_url, min_size=1, max_size=4)
    try:
        name = f"scale-{uuid.uuid4().hex[:8]}"
        principal = Principal(tenant_id=await ensure_tenant(admin, name), tenant_name=name)
        service = MemoryService(settings=settings, pool=pool, temporal=None,  # type: ignore[arg-type]
                                embedder=embedder)
        loaded = 0
        for target in args.rows:
            started = time.perf_counter()
            await load(pool, principal.tenant_id, "big", texts, vectors, target - loaded)
            print(f"load {target - loaded} rows: {time.perf_counter() - started:.0f} s")
            loaded = target
            async with admin.acquire() as conn:
                await conn.execute("VACUUM ANALYZE memories")
            print(f"{target} rows:", await measure(service, principal, "big", questions))
    finally:
        await pool.close()
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("locomo", type=Path)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--database-url")
    parser.add_argument("--admin-url")
    args = parser.parse_args()
    if args.database_url and args.admin_url:
        asyncio.run(run(args, args.admin_url, args.database_url, Path(tempfile.mkdtemp())))
        return
    with tempfile.TemporaryDirectory(prefix="team-memory-scale-") as tmp:
        postgres = embedded.start_postgres(Path(tmp) / "pg")
        try:
            asyncio.run(run(args, postgres.admin_url, postgres.app_url, Path(tmp)))
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
