"""The commit of an ingestion that adds its memory and nothing else (the common case), as one
statement: the status, the history event and the project's registration that
``memories.activate``, ``history.insert_event`` and ``consolidation.register_project`` write
one round trip each on every other path."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
import numpy as np

from team_memory_core.models.memories import HistoryEvent
from team_memory_core.store.rows import one


@dataclass(frozen=True)
class Added:
    """What the commit wrote: whether the memory was pending (and is active now), and whether
    its project's consolidation schedule is still to be created (see
    ``consolidation.register_project``)."""

    activated: bool
    schedule_needed: bool


@dataclass(frozen=True)
class AddedEvent:
    """The history event recorded with the activation, and the decision it carries."""

    event: HistoryEvent
    reason: str | None
    after_text: str
    policy: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None


async def activate_added(
    conn: asyncpg.Connection, *, tenant_id: UUID, memory_id: UUID, project: str,
    embedding: np.ndarray | None, event: AddedEvent,
) -> Added:
    """Activate the memory if it is pending (with ``embedding`` when its vector is not stored
    yet), record ``event`` and register its project, all or nothing. Not activated: the row is
    missing or no longer pending (a forget committed first: the UPDATE waits for a concurrent
    one and checks the status again), and nothing is written."""
    found = one(Added, await conn.fetchrow(
        """
        WITH activated AS (
            UPDATE memories SET status = 'active', embedding = coalesce($4, embedding),
                   updated_at = now()
            WHERE id = $2 AND status = 'pending'
            RETURNING id
        ), recorded AS (
            INSERT INTO memory_events (tenant_id, memory_id, event, reason, after_text, policy,
                                       model, input_tokens, output_tokens)
            SELECT $1, id, $5, $6, $7, $8, $9, $10, $11 FROM activated
        ), registered AS (
            INSERT INTO memory_projects (tenant_id, project) SELECT $1, $3 FROM activated
            ON CONFLICT (tenant_id, project) DO NOTHING
            RETURNING true
        )
        SELECT EXISTS (SELECT FROM activated) AS activated,
               EXISTS (SELECT FROM registered) OR coalesce(
                   (SELECT schedule_ensured_at IS NULL FROM memory_projects
                    WHERE tenant_id = $1 AND project = $3), true) AS schedule_needed
        """,
        tenant_id, memory_id, project, embedding, event.event.value, event.reason,
        event.after_text, event.policy, event.model, event.input_tokens, event.output_tokens,
    ))
    assert found is not None  # the statement always answers one row
    return found
