"""Migrations: versioned, idempotent, and the embedding dimension is guarded."""

from __future__ import annotations

import asyncpg
import pytest

from team_memory_core.store.migrate import (
    SchemaMismatch,
    check_embedding_dim,
    check_embedding_model,
    discover,
    migrate,
)
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


async def test_dimension_mismatch_is_a_clear_error(services: Services) -> None:
    conn = await asyncpg.connect(services.postgres.app_url)
    try:
        await check_embedding_dim(conn, 384)
        with pytest.raises(SchemaMismatch, match=r"384-dimensional.*1024"):
            await check_embedding_dim(conn, 1024)
    finally:
        await conn.close()


async def test_another_model_of_the_same_dimension_is_a_clear_error(services: Services) -> None:
    """The bundled model and its int8-arithmetic variant both give 384 dimensions; their
    vectors must not be mixed in one database (the suite's database was made with the
    default, the int8 one; a database made before it holds the bundled model's)."""
    conn = await asyncpg.connect(services.postgres.app_url)
    try:
        await check_embedding_model(conn, "all-MiniLM-L6-v2-dynamic-int8", 384)
        with pytest.raises(SchemaMismatch, match=(
                r"holds vectors of the embedding model 'all-MiniLM-L6-v2-dynamic-int8' but the "
                r"configured embedder is 'minilm'.*TEAM_MEMORY_EMBEDDING_MODEL=all-MiniLM")):
            await check_embedding_model(conn, "minilm", 384)  # the bundled model's short name
        with pytest.raises(SchemaMismatch, match=r"384-dimensional.*1024"):
            await check_embedding_model(conn, "all-MiniLM-L6-v2-dynamic-int8", 1024)
    finally:
        await conn.close()


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
