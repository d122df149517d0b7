"""What an ingestion reads and writes beyond the memory row itself: the neighbours its decision
compares the new memory with (read with the active embedding model, in one statement), and the
commit of an ingestion that adds its memory and nothing else (the common case) as one
statement: the status, the history event and the project's registration that
``memories.activate``, ``history.insert_event`` and ``consolidation.register_project`` write
one round trip each on every other path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import numpy as np

from team_memory_core.models.memories import HistoryEvent
from team_memory_core.store.embeddings import ModelsInUse, models_in_use
from team_memory_core.store.rows import one


@dataclass(frozen=True)
class Neighbour:
    id: UUID
    content: str
    category: str
    content_hash: str
    similarity: float
    author: UUID | None = None  # the member who saved it (None: not recorded)


async def similar_current(
    conn: asyncpg.Connection, embedding: np.ndarray, memory_id: UUID, project: str, limit: int,
    private_to: UUID | None,
) -> list[Neighbour]:
    """The live memories of the same project and the same reach closest to ``embedding``
    (``memory_id``'s vector), ``memory_id`` left out (exact scan: a project's live set is
    small enough, and an approximate index could miss the one duplicate). The same reach
    (``private_to``, the memory's member or None): a shared memory is compared with shared
    ones only, a personal one with its member's own, so no decision ever folds or merges text
    across that line (the worker sees every member's). Memories flagged as aimed at AI agents
    are left out too: nothing is merged into them, nothing is judged a copy of them.

    The vector is a parameter, not read from ``memory_id``'s row by the statement: a vector
    stored out of line (rows written before sql/012) would be fetched from the TOAST table
    again for every row it is compared with."""
    return neighbours_of(await conn.fetch(SIMILAR_CURRENT, embedding, memory_id, project, limit,
                                          private_to))


# {guard}: a condition on the row of active_embedding_model() the query is joined to, if any.
_NEIGHBOURS = """
    SELECT m.id, m.content, m.category, m.content_hash, m.author_id,
           1 - ((m.embedding <=> $1) + 0) AS similarity
    FROM memories m
    WHERE {guard} m.project = $3 AND m.status = 'active' AND m.id <> $2
      AND m.embedding IS NOT NULL AND cardinality(m.injection_flags) = 0
      AND m.private_to IS NOT DISTINCT FROM $5
    ORDER BY (m.embedding <=> $1) + 0
    LIMIT $4
"""
SIMILAR_CURRENT = _NEIGHBOURS.format(guard="")
# The lateral reference to the model's row (a.dim) makes the function run first, and the
# neighbours' query once for its one row.
SIMILAR_CURRENT_OF_MODEL = (
    "SELECT a.*, n.* FROM active_embedding_model(true) a LEFT JOIN LATERAL ("
    + _NEIGHBOURS.format(guard="a.dim IS NOT NULL AND") + ") n ON true")


def neighbours_of(rows: Sequence[asyncpg.Record]) -> list[Neighbour]:
    return [Neighbour(r["id"], r["content"], r["category"], r["content_hash"],
                      float(r["similarity"]), r["author_id"]) for r in rows
            if r["id"] is not None]


async def similar_current_of_model(
    conn: asyncpg.Connection, embedding: np.ndarray, memory_id: UUID, project: str, limit: int,
    private_to: UUID | None,
) -> tuple[ModelsInUse, list[Neighbour]]:
    """``similar_current`` and, first, the active embedding model read as
    ``embeddings.active_model(write=True)`` reads it (memories locked against a re-embed's
    switch until the transaction ends), in one round trip. The caller uses the neighbours only
    if the model is its vector's."""
    rows = await conn.fetch(SIMILAR_CURRENT_OF_MODEL, embedding, memory_id, project, limit,
                            private_to)
    return models_in_use(rows[0] if rows else None), neighbours_of(rows)


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
