"""The audit trail (table audit_log): who did what, to what, with which outcome.

Append-only for the application role; it outlives purges, so every text in a detail is
redacted on the way in, whoever wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from team_memory_core.rules.redaction import redact
from team_memory_core.store.rows import many


async def insert_audit(
    conn: asyncpg.Connection, *, tenant_id: UUID, key_id: UUID | None, actor: str, action: str,
    outcome: str, target: str | None = None, detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (tenant_id, key_id, actor, action, target, outcome, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        tenant_id, key_id, actor, action, target, outcome, _redacted(detail or {}),
    )


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value).text
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


async def audit_auth_failure(
    conn: asyncpg.Connection, key_hash: str, prefix: str | None, transport: str
) -> None:
    """A refused key, audited by a SECURITY DEFINER function (its tenant when the key is
    known, none otherwise): the caller has no tenant to write under."""
    await conn.execute("SELECT audit_auth_failure($1, $2, $3)", key_hash, prefix, transport)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    tenant_id: UUID | None
    key_id: UUID | None
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any]
    created_at: datetime


_AUDIT_COLUMNS = "id, tenant_id, key_id, actor, action, target, outcome, detail, created_at"


async def audit_entries(conn: asyncpg.Connection, limit: int) -> list[AuditEntry]:
    """The newest entries Row-Level Security shows: the current tenant's."""
    rows = await conn.fetch(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY id DESC LIMIT $1", limit
    )
    return many(AuditEntry, rows)


async def unscoped_audit_entries(conn: asyncpg.Connection, limit: int) -> list[AuditEntry]:
    """Failed authentications with unknown keys (schema owner only)."""
    rows = await conn.fetch(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE tenant_id IS NULL"
        " ORDER BY id DESC LIMIT $1",
        limit,
    )
    return many(AuditEntry, rows)
