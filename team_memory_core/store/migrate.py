"""Applies the versioned migrations in sql/ as the schema owner (idempotent)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from team_memory_core.embedder import same_model_name
from team_memory_core.settings import Settings

APP_ROLE = "team_memory_app"
_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

_LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(7468207)"
_CREATE_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_APPLIED_VERSIONS = "SELECT version FROM schema_migrations ORDER BY version"
_RECORD_VERSION = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
_ROLE_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)"
_SCHEMA_INFO_SET = (
    "INSERT INTO schema_info (key, value) VALUES ($1, $2)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)


class SchemaMismatch(RuntimeError):
    """The database holds vectors of another embedding model or dimension than configured."""


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
    if not await conn.fetchval(_ROLE_EXISTS, APP_ROLE):
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
            await conn.execute(_LOCK_MIGRATIONS)
            await _ensure_app_role(conn, settings.app_db_password.get_secret_value())
            await conn.execute(_CREATE_SCHEMA_TABLE)
            done = {r["version"] for r in await conn.fetch(_APPLIED_VERSIONS)}
            applied = []
            for migration in discover():
                if migration.version in done:
                    continue
                sql = migration.path.read_text().replace(
                    "{embedding_dim}", str(settings.embedding_dim)
                )
                await conn.execute(sql)
                await conn.execute(_RECORD_VERSION, migration.version, migration.name)
                applied.append(migration.version)
            if 1 in applied:
                await conn.execute(_SCHEMA_INFO_SET, "embedding_dim",
                                   str(settings.embedding_dim))
                await conn.execute(_SCHEMA_INFO_SET, "embedding_model",
                                   settings.embedding_model)
        return applied
    finally:
        await conn.close()


async def schema_info(conn: asyncpg.Connection, key: str) -> str | None:
    """A fact the migrations recorded (embedding_dim, embedding_model,
    temporal_plaintext_until); None before they ran."""
    value: str | None = await conn.fetchval("SELECT value FROM schema_info WHERE key = $1", key)
    return value


async def check_embedding_dim(conn: asyncpg.Connection, expected: int) -> None:
    stored = await schema_info(conn, "embedding_dim")
    if stored is None:
        raise SchemaMismatch("database is not migrated: run `team-memory migrate`")
    if int(stored) != expected:
        raise SchemaMismatch(
            f"the database stores {stored}-dimensional embeddings but the configured "
            f"embedder produces {expected}; use a matching model or a new database"
        )


async def check_embedding_model(conn: asyncpg.Connection, name: str, dim: int) -> None:
    """The configured embedder makes the vectors the database holds: the dimension, and the
    model recorded at the first migration (vectors of two models, even of one model's two
    variants, are not comparable)."""
    await check_embedding_dim(conn, dim)
    stored = await schema_info(conn, "embedding_model")
    if stored is not None and not same_model_name(stored, name):
        raise SchemaMismatch(
            f"the database holds vectors of the embedding model {stored!r} but the configured "
            f"embedder is {name!r}; set TEAM_MEMORY_EMBEDDING_MODEL={stored} or use a new "
            "database"
        )
