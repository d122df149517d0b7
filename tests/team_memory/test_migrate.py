"""Migrations: versioned, idempotent, and the database names its embedding model."""

from __future__ import annotations

import asyncpg
import pytest

from team_memory_core.active_model import load_database_model
from team_memory_core.embedder import create_embedder
from team_memory_core.store import embeddings
from team_memory_core.store.migrate import discover, migrate
from tests.conftest import Services

pytestmark = pytest.mark.anyio


async def test_migrating_twice_is_a_no_op(services: Services) -> None:
    assert await migrate(services.postgres.admin_url, services.settings()) == []
    conn = await asyncpg.connect(services.postgres.admin_url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        dim = await conn.fetchval("SELECT value FROM schema_info WHERE key = 'embedding_dim'")
    finally:
        await conn.close()
    assert [r["version"] for r in versions] == [m.version for m in discover()]
    assert dim == "384"


async def test_the_first_model_is_recorded_and_wins_over_the_configured_one(
        services: Services, app_pool: asyncpg.Pool) -> None:
    async with app_pool.acquire() as conn:
        records = await embeddings.model_records(conn)
    assert [(r.generation, r.provider, r.name, r.dim, r.state) for r in records[:1]] == [
        (0, "local", "sentence-transformers/all-MiniLM-L6-v2", 384, "active")]
    # A process configured for another model (here the bundled one cut to 128 dimensions)
    # embeds with the database's: its vectors must match the stored ones.
    other = services.settings(embedding_dim=128)
    embedder = await load_database_model(app_pool, other, create_embedder(other))
    assert (embedder.name, embedder.dim) == ("sentence-transformers/all-MiniLM-L6-v2", 384)


async def test_application_role_is_not_privileged(services: Services) -> None:
    conn = await asyncpg.connect(services.postgres.app_url)
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        owner = await conn.fetchval(
            "SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'memories'")
        unscoped = await conn.fetchval("SELECT count(*) FROM memories")
    finally:
        await conn.close()
    assert (role["rolsuper"], role["rolbypassrls"], owner) == (False, False, False)
    assert unscoped == 0
