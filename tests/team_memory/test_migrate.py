"""Migrations: versioned, idempotent, and the database names its embedding model."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import numpy as np
import pytest

from mcp_server.app import open_service
from mcp_server.memories import MemoryService
from team_memory_core.active_model import load_database_model
from team_memory_core.embedder import (
    BUNDLED_MODEL,
    Embedder,
    LocalEmbedder,
    create_embedder,
    same_model_name,
)
from team_memory_core.models.principal import Principal
from team_memory_core.settings import Settings
from team_memory_core.store import embeddings
from team_memory_core.store.migrate import discover, migrate
from tests.conftest import Services
from tests.support.reembed import own_database

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
        (0, "local", Settings().embedding_model, 384, "active")]
    # A process configured for another model (here the bundled one cut to 128 dimensions)
    # embeds with the database's: its vectors must match the stored ones.
    other = services.settings(embedding_model=BUNDLED_MODEL, embedding_dim=128)
    embedder = await load_database_model(app_pool, other, create_embedder(other))
    assert (embedder.name, embedder.dim) == (Settings().embedding_model, 384)


async def test_an_install_made_before_the_int8_default_keeps_searching_with_its_model(
        services: Services, embedder: Embedder) -> None:
    """A database migrated by an earlier release, whose default was the bundled model, holds
    that model's vectors: sql/016 labels them with the name schema_info recorded, and the
    upgraded processes (configured with today's default) search with it until a re-embed."""
    assert not same_model_name(Settings().embedding_model, BUNDLED_MODEL)
    earlier = {"embedding_model": BUNDLED_MODEL}
    async with own_database(services, earlier=(15, earlier)) as db:
        async with db.admin.acquire() as conn:
            records = await embeddings.model_records(conn)
        assert [(r.provider, r.name, r.dim, r.state) for r in records] == [
            ("local", BUNDLED_MODEL, 384, "active")]
        bundled = LocalEmbedder(services.data_dir / "models", BUNDLED_MODEL)
        principal = await db.tenant()
        stored = await db.seed(principal, bundled, 0, 12)  # vectors of the old model
        texts = list(stored.values())[0:8:2]  # in project alpha (seed alternates)
        async with open_service(db.settings) as service:
            assert same_model_name(service.model.current.name, BUNDLED_MODEL)
            found = [await ranked_cosines(service, principal, query) for query in texts]
        # A service started with today's default (the first model it loads) follows the
        # database's model for every search: no query vector of the int8 model meets the
        # bundled model's stored vectors.
        following = db.service(embedder)
        found_by_follower = [await ranked_cosines(following, principal, query)
                             for query in texts]
    assert found == found_by_follower
    assert [hits[0][0] for hits in found] == texts  # each text is its own best hit
    old = {text: vector for text, vector in zip(stored.values(), bundled.embed(
        list(stored.values())), strict=True)}
    new = {text: vector for text, vector in zip(stored.values(), embedder.embed(
        list(stored.values())), strict=True)}
    for query, hits in zip(texts, found, strict=True):
        assert np.allclose([cosine for _, cosine in hits],
                           [float(old[text] @ old[query]) for text, _ in hits], atol=2e-3)
        assert not np.allclose([cosine for _, cosine in hits],
                               [float(old[text] @ new[query]) for text, _ in hits], atol=2e-3)


async def ranked_cosines(service: MemoryService, principal: Principal,
                         query: str) -> list[tuple[str, float]]:
    """The search's hits (text, cosine as PostgreSQL computed it), best first."""
    filters = service.filters(principal, "alpha", None, None, None, None, False)
    ranked = await service.ranked(principal, query, filters, datetime.now(UTC), 5)
    return [(row.content, row.cosine) for row, _ in ranked]


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
