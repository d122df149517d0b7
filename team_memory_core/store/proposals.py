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
