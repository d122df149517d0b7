"""A memory's history (table memory_events): what happened to it, why, by which policy."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from team_memory_core.models.memories import HistoryEvent, MemoryEvent
from team_memory_core.store.rows import many


async def insert_event(
    conn: asyncpg.Connection,
    *,
    tenant_id: UUID,
    memory_id: UUID,
    event: HistoryEvent,
    reason: str | None = None,
    before_text: str | None = None,
    after_text: str | None = None,
    related_id: UUID | None = None,
    policy: str | None = None,
    model: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO memory_events (tenant_id, memory_id, event, reason, before_text, after_text,
                                   related_id, policy, model, input_tokens, output_tokens,
                                   detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, coalesce($12::jsonb, '{}'))
        """,
        tenant_id, memory_id, event.value, reason, before_text, after_text, related_id, policy,
        model, input_tokens, output_tokens, detail,
    )


async def memory_events(conn: asyncpg.Connection, memory_id: UUID) -> list[MemoryEvent]:
    """The memory's history, oldest first."""
    rows = await conn.fetch(
        "SELECT event, created_at, reason, related_id, policy, model FROM memory_events"
        " WHERE memory_id = $1 ORDER BY id",
        memory_id,
    )
    return many(MemoryEvent, rows)


async def erase_event_text(conn: asyncpg.Connection, ids: list[UUID]) -> int:
    """Clear the text of these memories' history events (purge); returns how many."""
    erased: int = await conn.fetchval("SELECT purge_event_text($1::uuid[])", ids)
    return erased
