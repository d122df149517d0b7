"""A database of its own for the re-embed tests (the switch changes the embedding model of a
whole database, so it must not be the session's), memories seeded with the real model's
vectors, and what the tests read back."""

from __future__ import annotations

import contextlib
import hashlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import numpy as np
from temporalio.client import Client

from mcp_server.memories import MemoryService
from team_memory_core.embedder import Embedder
from team_memory_core.models.principal import Principal
from team_memory_core.settings import Settings
from team_memory_core.store.migrate import migrate
from team_memory_core.store.pool import create_pool
from team_memory_core.store.rows import vector_text
from team_memory_core.temporal import connect
from team_memory_core.tenants import create_key, ensure_tenant
from tests.conftest import Services

_TOPICS = ["deploy", "database", "billing", "frontend", "search", "auth", "queue", "cache",
           "logging", "backups", "payments", "mobile"]
_FACTS = ["runs on Tuesdays after the release review", "needs a feature flag before rollout",
          "keeps its secrets in the vault, never in the repository",
          "was rewritten in Rust for latency", "pages the on-call engineer after five errors",
          "stores timestamps in UTC only", "retries three times with exponential backoff",
          "is owned by the platform team", "must stay behind the VPN",
          "uses Postgres 16 with pgvector", "is tested nightly against production data copies"]


def memory_text(i: int) -> str:
    """Distinct, plausible memory texts (the i-th)."""
    rng = random.Random(i)
    return (f"The {rng.choice(_TOPICS)} service {rng.choice(_FACTS)}; "
            f"the {rng.choice(_TOPICS)} job {rng.choice(_FACTS)} (note {i}).")


@dataclass
class OwnDatabase:
    settings: Settings
    admin: asyncpg.Pool
    pool: asyncpg.Pool
    client: Client

    async def tenant(self) -> Principal:
        name = f"t-{uuid.uuid4().hex[:10]}"
        tenant_id = await ensure_tenant(self.admin, name)
        issued = await create_key(self.admin, name)
        return Principal(tenant_id=tenant_id, tenant_name=name, key_id=issued.key_id)

    def service(self, embedder: Embedder) -> MemoryService:
        return MemoryService(settings=self.settings, pool=self.pool, temporal=self.client,
                             embedder=embedder)

    async def seed(self, principal: Principal, embedder: Embedder, first: int,
                   count: int) -> dict[uuid.UUID, str]:
        """``count`` active memories with the model's vectors (as their ingestion leaves
        them), in two projects; id -> text."""
        texts = [memory_text(i) for i in range(first, first + count)]
        ids = [uuid.uuid4() for _ in texts]
        vectors = embedder.embed(texts)
        await self.admin.execute(
            """
            INSERT INTO memories (id, tenant_id, project, content, category, content_hash,
                                  status, embedding)
            SELECT m.id, $1, m.project, m.content, 'general', m.hash, 'active', m.vec::vector
            FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
                 AS m (id, project, content, hash, vec)
            """,
            principal.tenant_id, ids, [("alpha", "beta")[i % 2] for i in range(count)], texts,
            [hashlib.sha256(t.encode()).hexdigest() for t in texts],
            [vector_text(v) for v in vectors],
        )
        return dict(zip(ids, texts, strict=True))

    async def vectors(self) -> dict[uuid.UUID, tuple[str, np.ndarray | None]]:
        """Every memory's text and active vector (as the owner: every tenant)."""
        rows = await self.admin.fetch("SELECT id, content, embedding FROM memories")
        return {r["id"]: (r["content"], None if r["embedding"] is None
                          else r["embedding"].to_numpy()) for r in rows}

    async def embedding_column(self) -> list[str]:
        """The vector columns of memories with their types, e.g. ['embedding vector(128)']."""
        rows = await self.admin.fetch(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod) AS col"
            " FROM pg_attribute WHERE attrelid = 'memories'::regclass AND attnum > 0"
            " AND NOT attisdropped AND format_type(atttypid, atttypmod) LIKE 'vector%'"
            " ORDER BY attname")
        return [r["col"] for r in rows]


@contextlib.asynccontextmanager
async def own_database(services: Services, *,
                       earlier: tuple[int, dict[str, object]] | None = None,
                       ) -> AsyncIterator[OwnDatabase]:
    """A new database in the session's cluster, migrated; dropped afterwards. ``earlier``:
    first migrated up to that version with those settings (an install an earlier release
    made), then upgraded with the session's."""
    name = f"reembed_{uuid.uuid4().hex[:10]}"
    admin_url = services.postgres.admin_url.replace("@/postgres?", f"@/{name}?")
    app_url = services.postgres.app_url.replace("@/postgres?", f"@/{name}?")
    assert admin_url != services.postgres.admin_url and app_url != services.postgres.app_url
    server = await asyncpg.connect(services.postgres.admin_url)
    try:
        await server.execute(f'CREATE DATABASE "{name}"')
        settings = services.settings(database_url=app_url, database_admin_url=admin_url)
        if earlier is not None:
            version, overrides = earlier
            await migrate(admin_url, services.settings(**overrides), upto=version)
        await migrate(admin_url, settings)
        admin = await create_pool(admin_url, min_size=1, max_size=4)
        pool = await create_pool(app_url, min_size=2, max_size=12)
        try:
            yield OwnDatabase(settings, admin, pool, await connect(settings, pool))
        finally:
            await pool.close()
            await admin.close()
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()
