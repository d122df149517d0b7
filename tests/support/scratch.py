"""A database of its own in the test cluster, migrated up to a given version: for tests of a
migration, which start from the schema (and rows) before it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg

from team_memory_core.store.migrate import migrate
from tests.conftest import Services


@contextlib.asynccontextmanager
async def database_at(services: Services, version: int) -> AsyncIterator[str]:
    """The admin URL of a new database with the migrations up to ``version`` applied;
    dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    admin_url = services.postgres.admin_url
    assert "/postgres?" in admin_url, admin_url
    url = admin_url.replace("/postgres?", f"/{name}?")
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
        try:
            await migrate(url, services.settings(), upto=version)
            yield url
        finally:
            await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await conn.close()
