"""Bulk-loading memories for the search benchmark: COPY of rows with real embeddings.

Going through save_memory would take one workflow per row (tens of minutes for 100k). The rows
loaded here are what ingestion produces (status active, embedding set), written with COPY as
the database owner. Embedding 100k texts with the local model takes ~15 minutes on 2 cores, so
only ``unique_vectors`` texts are embedded; the other rows reuse one of those vectors with a
little noise (their text, and so full-text search, stays their own).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import numpy as np

from bench.corpus import memory_text
from team_memory_core.embedder import Embedder
from team_memory_core.models.memories import content_hash, memory_id_for
from team_memory_core.store.pool import create_pool

_COLUMNS = ["id", "tenant_id", "project", "content", "category", "importance", "tags",
            "content_hash", "embedding", "status", "occurred_at", "source"]
_CATEGORIES = ["architecture", "preference", "bugfix", "business_rule", "general"]
_OFFSET = 10_000_000  # bulk rows never collide with the memories the other phases save
# Rows per COPY: each must end within the pool's command timeout (30 s). 5,000 rows into a
# 100k-memory table took 7-10 s on a quiet 2-core box and over 30 s on a busy one.
_COPY_ROWS = 1000


class BulkLoader:
    def __init__(self, admin_url: str, embedder: Embedder, unique_vectors: int) -> None:
        self._admin_url = admin_url
        self._embedder = embedder
        self._unique = unique_vectors
        self._vectors = np.zeros((0, embedder.dim), np.float32)
        self.embed_seconds = 0.0

    def _vector(self, i: int, rng: np.random.Generator) -> np.ndarray:
        if i < self._unique:
            return np.asarray(self._vectors[i])
        noisy = self._vectors[i % self._unique] + rng.normal(0, 0.02, self._embedder.dim)
        return np.asarray(noisy / np.linalg.norm(noisy), dtype=np.float32)

    def _embed_up_to(self, count: int) -> None:
        wanted = min(count, self._unique)
        if wanted <= len(self._vectors):
            return
        started = time.perf_counter()
        texts = [memory_text(_OFFSET + i) for i in range(len(self._vectors), wanted)]
        chunks = [self._embedder.embed(texts[j:j + 256]) for j in range(0, len(texts), 256)]
        self._vectors = np.vstack([self._vectors, *chunks])
        self.embed_seconds += time.perf_counter() - started

    async def fill(self, tenant: str, total: int, project: str = "default") -> int:
        """Add bulk rows until the tenant holds ``total`` memories; returns rows added."""
        pool = await create_pool(self._admin_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", tenant)
                have = await conn.fetchval("SELECT count(*) FROM memories WHERE tenant_id = $1",
                                           tenant_id)
                bulk_have = await conn.fetchval(
                    "SELECT count(*) FROM memories WHERE tenant_id = $1 AND source = 'bench'",
                    tenant_id)
                missing = max(0, total - have)
                first = int(bulk_have)
                self._embed_up_to(first + missing)
                await self._copy(conn, tenant_id, project, range(first, first + missing))
                await conn.execute("ANALYZE memories")
        finally:
            await pool.close()
        return int(missing)

    async def _copy(self, conn: asyncpg.Connection, tenant_id: UUID, project: str,
                    indexes: range) -> None:
        rng = np.random.default_rng(indexes.start)
        now = datetime.now(UTC)
        batch: list[tuple[object, ...]] = []
        for i in indexes:
            text = memory_text(_OFFSET + i)
            digest = content_hash(text)
            batch.append((
                memory_id_for(tenant_id, project, digest), tenant_id, project,
                text, _CATEGORIES[i % 5], 1 + i % 5, [f"t{i % 50}"], digest,
                self._vector(i, rng), "active", now - timedelta(minutes=i), "bench",
            ))
            if len(batch) == _COPY_ROWS:
                await self._flush(conn, batch)
        await self._flush(conn, batch)

    @staticmethod
    async def _flush(conn: asyncpg.Connection, batch: list[tuple[object, ...]]) -> None:
        if batch:
            await conn.copy_records_to_table("memories", records=batch,
                                             columns=_COLUMNS)
            batch.clear()
