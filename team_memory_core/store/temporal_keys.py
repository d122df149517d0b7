"""The keys that encrypt Temporal payloads (team_memory_core/temporal_keys.py): each tenant's
keyring, wrapped by the KEK, and one key per workflow wrapped by a tenant key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from team_memory_core.store.rows import many, one, wrote


@dataclass(frozen=True)
class TenantKey:
    id: UUID
    kek_id: str  # the KEK that wraps it
    wrapped: bytes


@dataclass(frozen=True, kw_only=True)
class KeyringEntry(TenantKey):
    created_at: datetime
    workflow_keys: int  # how many workflow keys it wraps


@dataclass(frozen=True)
class WorkflowKey:
    id: UUID
    workflow_id: str
    wrapped_by: UUID  # the tenant key that wraps it
    wrapped: bytes


async def newest_tenant_key(conn: asyncpg.Connection) -> TenantKey | None:
    return one(TenantKey, await conn.fetchrow(
        "SELECT id, kek_id, wrapped FROM temporal_tenant_keys"
        " ORDER BY created_at DESC, id LIMIT 1"))


async def tenant_key(conn: asyncpg.Connection, key_id: UUID) -> TenantKey | None:
    return one(TenantKey, await conn.fetchrow(
        "SELECT id, kek_id, wrapped FROM temporal_tenant_keys WHERE id = $1", key_id))


async def lock_tenant_keyring(conn: asyncpg.Connection, tenant_id: UUID) -> None:
    """Serialize key creation and rotation of one tenant (until the transaction ends)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 13))",
                       f"temporal-keys/{tenant_id}")


async def insert_tenant_key(
    conn: asyncpg.Connection, *, key_id: UUID, tenant_id: UUID, kek_id: str, wrapped: bytes
) -> None:
    await conn.execute(
        "INSERT INTO temporal_tenant_keys (id, tenant_id, kek_id, wrapped)"
        " VALUES ($1, $2, $3, $4)",
        key_id, tenant_id, kek_id, wrapped)


async def tenant_keys(conn: asyncpg.Connection) -> list[KeyringEntry]:
    """The tenant's keyring, newest first, with how many workflow keys each one wraps."""
    rows = await conn.fetch(
        """
        SELECT k.id, k.kek_id, k.wrapped, k.created_at,
               (SELECT count(*) FROM temporal_workflow_keys w WHERE w.wrapped_by = k.id)
                   AS workflow_keys
        FROM temporal_tenant_keys k ORDER BY k.created_at DESC, k.id
        """)
    return many(KeyringEntry, rows)


async def rewrap_tenant_key(
    conn: asyncpg.Connection, key_id: UUID, kek_id: str, wrapped: bytes
) -> None:
    await conn.execute(
        "UPDATE temporal_tenant_keys SET kek_id = $2, wrapped = $3 WHERE id = $1",
        key_id, kek_id, wrapped)


async def delete_tenant_key(conn: asyncpg.Connection, key_id: UUID) -> bool:
    return await wrote(conn, "DELETE FROM temporal_tenant_keys WHERE id = $1 RETURNING id",
                       key_id)


_WORKFLOW_KEY_COLUMNS = "id, workflow_id, wrapped_by, wrapped"


async def workflow_key(conn: asyncpg.Connection, key_id: UUID) -> WorkflowKey | None:
    return one(WorkflowKey, await conn.fetchrow(
        f"SELECT {_WORKFLOW_KEY_COLUMNS} FROM temporal_workflow_keys WHERE id = $1", key_id))


async def workflow_key_for(conn: asyncpg.Connection, workflow_id: str) -> WorkflowKey | None:
    return one(WorkflowKey, await conn.fetchrow(
        f"SELECT {_WORKFLOW_KEY_COLUMNS} FROM temporal_workflow_keys WHERE workflow_id = $1",
        workflow_id))


@dataclass(frozen=True)
class NewWorkflowKey:
    id: UUID
    workflow_id: str
    wrapped: bytes


async def insert_workflow_keys(
    conn: asyncpg.Connection, tenant_id: UUID, wrapped_by: UUID, keys: list[NewWorkflowKey],
) -> list[WorkflowKey]:
    """Insert the keys of workflows that have none in one statement; returns the keys the
    other workflows had already (another process created them first)."""
    created = await conn.fetch(
        """
        INSERT INTO temporal_workflow_keys (id, tenant_id, workflow_id, wrapped_by, wrapped)
        SELECT k.id, $1, k.workflow_id, $2, k.wrapped
        FROM unnest($3::uuid[], $4::text[], $5::bytea[]) AS k (id, workflow_id, wrapped)
        ON CONFLICT (tenant_id, workflow_id) DO NOTHING
        RETURNING workflow_id
        """,
        tenant_id, wrapped_by, [k.id for k in keys], [k.workflow_id for k in keys],
        [k.wrapped for k in keys])
    existing = ({k.workflow_id for k in keys} - {row["workflow_id"] for row in created})
    if not existing:
        return []
    rows = await conn.fetch(
        f"SELECT {_WORKFLOW_KEY_COLUMNS} FROM temporal_workflow_keys"
        " WHERE workflow_id = ANY($1::text[])",
        sorted(existing))
    return many(WorkflowKey, rows)


async def workflow_keys_not_wrapped_by(
    conn: asyncpg.Connection, wrapping_key: UUID, limit: int
) -> list[WorkflowKey]:
    rows = await conn.fetch(
        f"SELECT {_WORKFLOW_KEY_COLUMNS} FROM temporal_workflow_keys WHERE wrapped_by <> $1"
        " ORDER BY id LIMIT $2 FOR UPDATE",
        wrapping_key, limit)
    return many(WorkflowKey, rows)


async def rewrap_workflow_key(
    conn: asyncpg.Connection, key_id: UUID, wrapped_by: UUID, wrapped: bytes
) -> None:
    await conn.execute(
        "UPDATE temporal_workflow_keys SET wrapped_by = $2, wrapped = $3 WHERE id = $1",
        key_id, wrapped_by, wrapped)


async def delete_workflow_keys(conn: asyncpg.Connection, workflow_ids: list[str]) -> list[str]:
    """Crypto-shredding: the workflows' histories cannot be decrypted any more."""
    rows = await conn.fetch(
        "DELETE FROM temporal_workflow_keys WHERE workflow_id = ANY($1::text[])"
        " RETURNING workflow_id",
        workflow_ids)
    return sorted(row["workflow_id"] for row in rows)
