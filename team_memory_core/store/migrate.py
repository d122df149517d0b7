"""Applies the versioned migrations in sql/ as the schema owner (idempotent)."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from team_memory_core.embedder import UnknownModel, local_model, same_model_name
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
# The model of the vectors already stored, when sql/016 starts recording models: the one
# schema_info recorded at the first migration (what the database holds, even when the
# configured default has changed since), at the dimension it recorded.
_FIRST_EMBEDDING_MODEL = """
INSERT INTO embedding_models (generation, provider, name, dim, state, switched_at)
SELECT 0, $1, $2, value::integer, 'active', now() FROM schema_info WHERE key = 'embedding_dim'
ON CONFLICT DO NOTHING
"""
_EMBEDDING_MODELS_VERSION = 16


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


async def migrate(admin_dsn: str, settings: Settings, upto: int | None = None) -> list[int]:
    """Apply pending migrations (those up to version ``upto`` when given: tests of a
    migration start from the schema before it); returns the versions applied (empty when up
    to date)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            await conn.execute(_LOCK_MIGRATIONS)
            await _ensure_app_role(conn, settings.app_db_password.get_secret_value())
            await conn.execute(_CREATE_SCHEMA_TABLE)
            done = {r["version"] for r in await conn.fetch(_APPLIED_VERSIONS)}
            applied = []
            for migration in discover():
                if migration.version in done or (upto is not None and migration.version > upto):
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
            if _EMBEDDING_MODELS_VERSION in applied:
                await _record_first_embedding_model(conn, settings)
        return applied
    finally:
        await conn.close()


async def schema_info(conn: asyncpg.Connection, key: str) -> str | None:
    """A fact the migrations recorded (embedding_dim, embedding_model,
    temporal_plaintext_until); None before they ran."""
    value: str | None = await conn.fetchval("SELECT value FROM schema_info WHERE key = $1", key)
    return value


async def _record_first_embedding_model(conn: asyncpg.Connection, settings: Settings) -> None:
    """Label the stored vectors with the model schema_info names. Its provider is not
    recorded: the configured one, unless the name is a local model's and the configured name
    is another model's (a database made before the local default changed)."""
    name = await schema_info(conn, "embedding_model") or settings.embedding_model
    provider = settings.embedding_provider
    if not same_model_name(name, settings.embedding_model):
        with contextlib.suppress(UnknownModel):
            local_model(name)  # raises unless it names a local model
            provider = "local"
    await conn.execute(_FIRST_EMBEDDING_MODEL, provider, name)
