"""Applies the versioned migrations in sql/ as the schema owner (idempotent)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from team_memory_core.settings import Settings
from team_memory_core.store import queries

APP_ROLE = "team_memory_app"
_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class SchemaMismatch(RuntimeError):
    """The database was created for another embedding dimension than the one configured."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def sql_dir() -> Path:
    """sql/ beside the packages in a checkout; packaged inside team_memory_core in a wheel."""
    core = Path(__file__).resolve().parent.parent
    for candidate in (core.parent / "sql", core / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("sql/ migrations directory not found")


def discover() -> list[Migration]:
    found = []
    for path in sorted(sql_dir().glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


async def _ensure_app_role(conn: asyncpg.Connection, password: str) -> None:
    if not await conn.fetchval(queries.ROLE_EXISTS, APP_ROLE):
        await conn.execute(
            f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        )
    escaped = password.replace("'", "''")
    await conn.execute(f"ALTER ROLE {APP_ROLE} PASSWORD '{escaped}'")


async def migrate(admin_dsn: str, settings: Settings) -> list[int]:
    """Apply pending migrations; returns the versions applied (empty when up to date)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            await conn.execute(queries.LOCK_MIGRATIONS)
            await _ensure_app_role(conn, settings.app_db_password.get_secret_value())
            await conn.execute(queries.CREATE_SCHEMA_TABLE)
            done = {r["version"] for r in await conn.fetch(queries.APPLIED_VERSIONS)}
            applied = []
            for migration in discover():
                if migration.version in done:
                    continue
                sql = migration.path.read_text().replace(
                    "{embedding_dim}", str(settings.embedding_dim)
                )
                await conn.execute(sql)
                await conn.execute(queries.RECORD_VERSION, migration.version, migration.name)
                applied.append(migration.version)
            if 1 in applied:
                await conn.execute(queries.SCHEMA_INFO_SET, "embedding_dim",
                                   str(settings.embedding_dim))
                await conn.execute(queries.SCHEMA_INFO_SET, "embedding_model",
                                   settings.embedding_model)
        return applied
    finally:
        await conn.close()


async def check_embedding_dim(conn: asyncpg.Connection, expected: int) -> None:
    stored = await conn.fetchval(queries.SCHEMA_INFO_GET, "embedding_dim")
    if stored is None:
        raise SchemaMismatch("database is not migrated: run `team-memory migrate`")
    if int(stored) != expected:
        raise SchemaMismatch(
            f"the database stores {stored}-dimensional embeddings but the configured "
            f"embedder produces {expected}; use a matching model or a new database"
        )
