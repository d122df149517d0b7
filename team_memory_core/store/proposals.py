"""Changes the model proposed to another author's memory, held for review instead of
applied (team_memory_core/review.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from team_memory_core.store.rows import many


@dataclass(frozen=True)
class Proposal:
    """A change the model proposed to another author's memory, held for review."""

    kind: str  # merge | supersede
    target_id: UUID
    source_ids: list[UUID]
    proposed_text: str | None
    reason: str | None
    origin: str  # ingest | consolidation
    policy: str
    model: str | None
    key_id: UUID | None = None
    run_id: UUID | None = None


async def insert_proposal(
    conn: asyncpg.Connection, tenant_id: UUID, project: str, proposal: Proposal
) -> int | None:
    """Hold ``proposal`` for review; None when the same change is already pending."""
    held: int | None = await conn.fetchval(
        """
        INSERT INTO memory_proposals (tenant_id, project, kind, target_id, source_ids,
                                      proposed_text, reason, origin, key_id, run_id, policy,
                                      model)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (tenant_id, kind, target_id, source_ids) WHERE status = 'pending'
        DO NOTHING
        RETURNING id
        """,
        tenant_id, project, proposal.kind, proposal.target_id, sorted(proposal.source_ids),
        proposal.proposed_text, proposal.reason, proposal.origin, proposal.key_id,
        proposal.run_id, proposal.policy, proposal.model,
    )
    return held


@dataclass(frozen=True, kw_only=True)
class HeldProposal(Proposal):
    id: int
    project: str
    status: str  # pending | approved | rejected
    created_at: datetime


async def proposals(
    conn: asyncpg.Connection, status: str | None, limit: int
) -> list[HeldProposal]:
    """The newest review proposals Row-Level Security shows (all statuses when None)."""
    rows = await conn.fetch(
        "SELECT id, project, kind, target_id, source_ids, proposed_text, reason, origin,"
        " key_id, run_id, policy, model, status, created_at FROM memory_proposals"
        " WHERE $1::text IS NULL OR status = $1 ORDER BY id DESC LIMIT $2",
        status, limit,
    )
    return many(HeldProposal, rows)


async def erase_proposal_text(conn: asyncpg.Connection, ids: list[UUID]) -> None:
    """The text of review proposals that would change, or came from, erased memories."""
    await conn.execute(
        "UPDATE memory_proposals SET proposed_text = NULL, reason = NULL"
        " WHERE target_id = ANY($1::uuid[]) OR source_ids && $1::uuid[]",
        ids,
    )


# --- the review queue's merges and supersedes (sql/019_merge_review_queue.sql) ---------------


@dataclass(frozen=True)
class PendingChange:
    """A held merge or supersede waiting in the review queue."""

    id: int
    project: str
    kind: str  # merge | supersede
    target_id: UUID
    source_ids: list[UUID]
    proposed_text: str | None  # a merge's text (None: a supersede, or erased by a purge)
    reason: str | None
    origin: str  # ingest | consolidation
    approved_by: list[UUID]  # the members who approved it so far
    created_at: datetime


_PENDING_CHANGE = """
SELECT id, project, kind, target_id, source_ids, proposed_text, reason, origin, approved_by,
       created_at
FROM memory_proposals WHERE kind IN ('merge', 'supersede') AND status = 'pending'
"""


async def changes_waiting(conn: asyncpg.Connection, project: str | None,
                          limit: int) -> list[PendingChange]:
    """The pending merges and supersedes Row-Level Security shows (every memory they name is
    visible), oldest first (of one project, or of every project the caller reaches)."""
    rows = await conn.fetch(
        _PENDING_CHANGE + " AND ($1::text IS NULL OR project = $1) ORDER BY id LIMIT $2",
        project, limit)
    return many(PendingChange, rows)


async def lock_changes(conn: asyncpg.Connection, target_id: UUID, proposal_id: int | None,
                       *, lock: bool = True) -> list[PendingChange]:
    """The pending merges and supersedes of this target (or the one numbered), ``lock``-ed
    until the transaction ends."""
    rows = await conn.fetch(
        _PENDING_CHANGE + " AND target_id = $1 AND ($2::bigint IS NULL OR id = $2)"
        " ORDER BY id" + (" FOR UPDATE" if lock else ""), target_id, proposal_id)
    return many(PendingChange, rows)


async def add_approval(conn: asyncpg.Connection, proposal_id: int, member_id: UUID) -> None:
    await conn.execute(
        "UPDATE memory_proposals SET approved_by = array_append(approved_by, $2)"
        " WHERE id = $1 AND status = 'pending' AND NOT ($2 = ANY(approved_by))",
        proposal_id, member_id)


@dataclass(frozen=True)
class NamedMemory:
    """A memory a pending change names, as the queue shows it and an approval checks it."""

    id: UUID
    project: str
    content: str
    status: str
    author_id: UUID | None
    author: str | None  # the author's member name
    private_to: UUID | None
    updated_at: datetime
    purged: bool
    injection_flags: list[str]


async def named_memories(conn: asyncpg.Connection, ids: list[UUID], *,
                         lock: bool = False) -> list[NamedMemory]:
    """These memories, where Row-Level Security shows them (``lock``: until the transaction
    ends, so that none changes between the check and the change)."""
    rows = await conn.fetch(
        "SELECT m.id, m.project, m.content, m.status, m.author_id, mb.name AS author,"
        " m.private_to, m.updated_at, m.purged_at IS NOT NULL AS purged, m.injection_flags"
        " FROM memories m LEFT JOIN members mb ON mb.id = m.author_id"
        " WHERE m.id = ANY($1::uuid[]) ORDER BY m.id"
        + (" FOR UPDATE OF m" if lock else ""), ids)
    return many(NamedMemory, rows)


async def record_merged_from(conn: asyncpg.Connection, memory_id: UUID,
                             merged: list[UUID]) -> None:
    """The memories an approved merge folded into ``memory_id`` (its provenance)."""
    await conn.execute(
        "UPDATE memories SET merged_from = merged_from || $2::uuid[] WHERE id = $1",
        memory_id, merged)
