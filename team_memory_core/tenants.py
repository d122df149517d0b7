"""Tenants and API keys: created by operators (CLI), verified by the MCP server."""

from __future__ import annotations

import getpass
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from team_memory_core.models.principal import Principal
from team_memory_core.store import tenants as store
from team_memory_core.store.audit import audit_auth_failure, insert_audit
from team_memory_core.store.pool import tenant_tx

KEY_PREFIX = "tm_"
PREFIX_CHARS = 8


def operator() -> str:
    """The audit actor of CLI commands: the operating-system user running them."""
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    key_id: UUID
    secret: str
    prefix: str
    member_id: UUID | None = None


class UnknownTenant(LookupError):
    pass


class UnknownMember(LookupError):
    pass


class MemberExists(ValueError):
    pass


# A member's name: what the audit trail, provenance and the review queue show.
MEMBER_NAME = re.compile(r"^\w[\w .@+-]{0,99}$")


async def ensure_tenant(admin: asyncpg.Pool, name: str) -> UUID:
    """Create the tenant if it does not exist; returns its id either way."""
    async with admin.acquire() as conn:
        found = await store.tenant_by_name(conn, name)
        if found is not None:
            return found.id
    tenant_id = uuid.uuid4()
    async with tenant_tx(admin, tenant_id) as conn:
        await store.insert_tenant(conn, tenant_id, name)
        found = await store.tenant_by_name(conn, name)
        if found is not None and found.id == tenant_id:
            await insert_audit(conn, tenant_id=tenant_id, key_id=None, actor=operator(),
                               action="tenant.create", target=name, outcome="ok")
    assert found is not None
    return found.id


async def tenant_id_by_name(admin: asyncpg.Pool, name: str) -> UUID:
    async with admin.acquire() as conn:
        found = await store.tenant_by_name(conn, name)
    if found is None:
        raise UnknownTenant(f"no tenant named {name!r}")
    return found.id


_DURATION = re.compile(r"^(\d{1,5})([hdw])$")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_duration(text: str) -> timedelta:
    """``12h``, ``90d`` or ``6w``."""
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 12h, 90d or 6w")
    return int(match.group(1)) * _UNIT[match.group(2)]


def check_member_name(name: str) -> str:
    name = name.strip()
    if not MEMBER_NAME.fullmatch(name):
        raise ValueError("a member name is 1-100 letters, digits, spaces and ._@+- "
                         "(starting with a letter or digit)")
    return name


async def add_member(admin: asyncpg.Pool, tenant: str, name: str) -> UUID:
    """A new member of the tenant; MemberExists if it has one of that name."""
    tenant_id = await tenant_id_by_name(admin, tenant)
    async with tenant_tx(admin, tenant_id) as conn:
        member_id = await _add_member(conn, tenant_id, check_member_name(name))
    if member_id is None:
        raise MemberExists(f"tenant {tenant!r} has a member named {name.strip()!r} already")
    return member_id


async def _add_member(conn: asyncpg.Connection, tenant_id: UUID, name: str) -> UUID | None:
    member_id = uuid.uuid4()
    if not await store.insert_member(conn, member_id, tenant_id, name):
        return None
    await insert_audit(conn, tenant_id=tenant_id, key_id=None, actor=operator(),
                       action="member.create", target=str(member_id), outcome="ok",
                       detail={"name": name})
    return member_id


async def ensure_member(admin: asyncpg.Pool, tenant: str, name: str) -> UUID:
    """The tenant's member of that name, added if it has none."""
    tenant_id = await tenant_id_by_name(admin, tenant)
    async with tenant_tx(admin, tenant_id) as conn:
        return await _ensure_member(conn, tenant_id, name)


async def _ensure_member(conn: asyncpg.Connection, tenant_id: UUID, name: str) -> UUID:
    name = check_member_name(name)
    existing = await store.member_named(conn, tenant_id, name)
    if existing is not None:
        return existing.id
    created = await _add_member(conn, tenant_id, name)
    assert created is not None  # the transaction holds no member of that name
    return created


def local_member_name() -> str:
    """The member of the local stack's key: the operating-system user running it."""
    try:
        return check_member_name(getpass.getuser())
    except (KeyError, OSError, ValueError):
        return "local-user"


async def list_members(admin: asyncpg.Pool, tenant: str) -> list[store.Member]:
    tenant_id = await tenant_id_by_name(admin, tenant)
    async with tenant_tx(admin, tenant_id) as conn:
        return await store.list_members(conn, tenant_id)


async def _key_member(conn: asyncpg.Connection, tenant: str, tenant_id: UUID, name: str,
                      member: str | None) -> UUID:
    """The member a new key belongs to: ``member``, which must exist, or else the member
    named after the key (created when the tenant has none of that name)."""
    if member is not None:
        found = await store.member_named(conn, tenant_id, member.strip())
        if found is None:
            raise UnknownMember(f"tenant {tenant!r} has no member named {member.strip()!r}: "
                                f"add it first (team-memory member add --tenant {tenant} NAME)")
        return found.id
    return await _ensure_member(conn, tenant_id, name)


async def create_key(
    admin: asyncpg.Pool, tenant: str, *, name: str = "default", project: str | None = None,
    read_only: bool = False, expires_at: datetime | None = None, member: str | None = None,
) -> IssuedKey:
    """A new key of ``member`` (default: the member named after the key, created if need
    be); with ``expires_at`` it is refused from then on, like a revoked one."""
    tenant_id = await tenant_id_by_name(admin, tenant)
    secret = KEY_PREFIX + secrets.token_urlsafe(24)
    issued = IssuedKey(key_id=uuid.uuid4(), secret=secret, prefix=secret[:PREFIX_CHARS])
    async with tenant_tx(admin, tenant_id) as conn:
        member_id = await _key_member(conn, tenant, tenant_id, name, member)
        await store.insert_key(conn, key_id=issued.key_id, tenant_id=tenant_id, name=name,
                               prefix=issued.prefix, key_hash=hash_key(secret),
                               project=project, read_only=read_only, expires_at=expires_at,
                               member_id=member_id)
        await insert_audit(
            conn, tenant_id=tenant_id, key_id=issued.key_id, actor=operator(),
            action="key.create", target=str(issued.key_id), outcome="ok",
            detail={"name": name, "prefix": issued.prefix, "project": project,
                    "read_only": read_only, "expires_at": expires_at,
                    "member_id": member_id},
        )
    return replace(issued, member_id=member_id)


async def revoke_key(admin: asyncpg.Pool, key_id: UUID) -> bool:
    """Revoke a key (effective on the next request: keys are verified on every request)."""
    async with admin.acquire() as conn:
        tenant_id = await store.key_tenant(conn, key_id)
    if tenant_id is None:
        return False
    async with tenant_tx(admin, tenant_id) as conn:
        revoked = await store.revoke_key(conn, key_id)
        if revoked:
            await insert_audit(conn, tenant_id=tenant_id, key_id=key_id, actor=operator(),
                               action="key.revoke", target=str(key_id), outcome="ok")
    return revoked


async def authenticate(pool: asyncpg.Pool, secret: str) -> Principal | None:
    """The principal an API key stands for, or None for a wrong, revoked or expired key."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    async with pool.acquire() as conn:
        owner = await store.authenticate_key(conn, hash_key(secret))
    if owner is None:
        return None
    return Principal(tenant_id=owner.tenant_id, tenant_name=owner.tenant_name,
                     key_id=owner.key_id, project=owner.project, read_only=owner.read_only,
                     member_id=owner.member_id, member_name=owner.member_name)


async def record_auth_failure(pool: asyncpg.Pool, secret: str, transport: str) -> None:
    """Audit a refused key: its public prefix only (and only if it has our format)."""
    prefix = secret[:PREFIX_CHARS] if secret.startswith(KEY_PREFIX) else None
    async with pool.acquire() as conn:
        await audit_auth_failure(conn, hash_key(secret), prefix, transport)
