"""Tenants and API keys, and the SECURITY DEFINER lookups that run before a tenant is known
(a key's owner, a tenant's id by name)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from team_memory_core.store.rows import many, one, wrote


@dataclass(frozen=True)
class Tenant:
    id: UUID
    name: str


async def tenant_by_name(conn: asyncpg.Connection, name: str) -> Tenant | None:
    """Any tenant as the schema owner (the registry's Row-Level Security is not forced for
    it); as the application role, only the transaction's own."""
    return one(Tenant, await conn.fetchrow("SELECT id, name FROM tenants WHERE name = $1", name))


async def list_tenants(conn: asyncpg.Connection) -> list[Tenant]:
    return many(Tenant, await conn.fetch("SELECT id, name FROM tenants ORDER BY name"))


async def insert_tenant(conn: asyncpg.Connection, tenant_id: UUID, name: str) -> None:
    await conn.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        tenant_id, name,
    )


async def tenant_id_named(conn: asyncpg.Connection, name: str) -> UUID | None:
    """A tenant's id by its name, for the application role (SECURITY DEFINER)."""
    found: UUID | None = await conn.fetchval("SELECT tenant_id_named($1)", name)
    return found


async def tenant_name(conn: asyncpg.Connection, tenant_id: UUID) -> str | None:
    name: str | None = await conn.fetchval("SELECT name FROM tenants WHERE id = $1", tenant_id)
    return name


# --- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyOwner:
    """Whom a valid (known, unrevoked, unexpired) key stands for."""

    key_id: UUID
    tenant_id: UUID
    tenant_name: str
    project: str | None
    read_only: bool
    member_id: UUID
    member_name: str


async def authenticate_key(conn: asyncpg.Connection, key_hash: str) -> KeyOwner | None:
    """The owner of the key with this hash (SECURITY DEFINER: no tenant is set yet)."""
    return one(KeyOwner, await conn.fetchrow("SELECT * FROM authenticate_key($1)", key_hash))


async def insert_key(
    conn: asyncpg.Connection, *, key_id: UUID, tenant_id: UUID, name: str, prefix: str,
    key_hash: str, project: str | None, read_only: bool, expires_at: datetime | None,
    member_id: UUID,
) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, project, read_only,"
        " expires_at, member_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        key_id, tenant_id, name, prefix, key_hash, project, read_only, expires_at, member_id,
    )


@dataclass(frozen=True)
class ApiKey:
    """A key as listed (never its hash)."""

    id: UUID
    name: str
    prefix: str
    project: str | None
    read_only: bool
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None
    expired: bool | None  # None: the key never expires
    member: str


async def list_keys(conn: asyncpg.Connection, tenant_id: UUID) -> list[ApiKey]:
    rows = await conn.fetch(
        "SELECT k.id, k.name, k.prefix, k.project, k.read_only, k.created_at, k.revoked_at,"
        " k.expires_at, k.expires_at <= now() AS expired, m.name AS member"
        " FROM api_keys k JOIN members m ON m.id = k.member_id WHERE k.tenant_id = $1"
        " ORDER BY k.created_at",
        tenant_id,
    )
    return many(ApiKey, rows)


async def key_tenant(conn: asyncpg.Connection, key_id: UUID) -> UUID | None:
    tenant_id: UUID | None = await conn.fetchval(
        "SELECT tenant_id FROM api_keys WHERE id = $1", key_id
    )
    return tenant_id


async def revoke_key(conn: asyncpg.Connection, key_id: UUID) -> bool:
    return await wrote(
        conn,
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
        " RETURNING id",
        key_id,
    )


# --- members ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    id: UUID
    name: str
    created_at: datetime
    keys: int  # active keys (not revoked)


_MEMBER = ("SELECT m.id, m.name, m.created_at, (SELECT count(*) FROM api_keys k"
           " WHERE k.member_id = m.id AND k.revoked_at IS NULL)::int AS keys FROM members m")


async def insert_member(conn: asyncpg.Connection, member_id: UUID, tenant_id: UUID,
                        name: str) -> bool:
    """False when the tenant has a member of that name already."""
    return await wrote(
        conn,
        "INSERT INTO members (id, tenant_id, name) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, name) DO NOTHING RETURNING id",
        member_id, tenant_id, name,
    )


async def member_named(conn: asyncpg.Connection, tenant_id: UUID, name: str) -> Member | None:
    return one(Member, await conn.fetchrow(
        _MEMBER + " WHERE m.tenant_id = $1 AND m.name = $2", tenant_id, name))


async def list_members(conn: asyncpg.Connection, tenant_id: UUID) -> list[Member]:
    return many(Member, await conn.fetch(
        _MEMBER + " WHERE m.tenant_id = $1 ORDER BY m.name", tenant_id))


async def members_named(conn: asyncpg.Connection, tenant_id: UUID,
                        names: list[str]) -> dict[str, UUID]:
    rows = await conn.fetch(
        "SELECT name, id FROM members WHERE tenant_id = $1 AND name = ANY($2::text[])",
        tenant_id, names)
    return {row["name"]: row["id"] for row in rows}


async def member_of_key(conn: asyncpg.Connection, key_id: UUID) -> UUID | None:
    """The member a key belongs to (in the transaction's tenant)."""
    found: UUID | None = await conn.fetchval(
        "SELECT member_id FROM api_keys WHERE id = $1", key_id)
    return found
