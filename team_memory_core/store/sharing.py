"""Promotion and review (sql/017_scopes.sql): the projects' review settings, the personal
memory a promotion shares, and the promotions waiting in the review queue (memory_proposals
of kind 'promote')."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from team_memory_core.models.memories import Category, MemoryStatus, Origin
from team_memory_core.rules.sharing import Review
from team_memory_core.store.rows import many, one, wrote

# --- the review setting of a project -------------------------------------------------------


async def reviews_of(conn: asyncpg.Connection, projects: Sequence[str]) -> list[Review]:
    """The review settings of these projects (a project never configured is open)."""
    rows = await conn.fetch(
        "SELECT p.project, coalesce(s.review, 'open') AS review"
        " FROM unnest($1::text[]) AS p (project)"
        " LEFT JOIN memory_projects s ON s.project = p.project",
        list(projects),
    )
    return [Review(row["review"]) for row in rows]


async def set_review(conn: asyncpg.Connection, tenant_id: UUID, project: str,
                     review: Review) -> Review | None:
    """Set a project's review setting; returns the one it had (None: never configured)."""
    before: str | None = await conn.fetchval(
        "SELECT review FROM memory_projects WHERE project = $1", project)
    await conn.execute(
        "INSERT INTO memory_projects (tenant_id, project, review) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, project) DO UPDATE SET review = EXCLUDED.review",
        tenant_id, project, review.value,
    )
    return None if before is None else Review(before)


# --- the personal memory a promotion shares -------------------------------------------


@dataclass(frozen=True)
class Promotable:
    """A memory as a promotion copies it into its shared scope, locked."""

    id: UUID
    project: str
    content: str
    content_hash: str
    category: Category
    importance: int
    tags: list[str]
    occurred_at: datetime
    source: str | None
    created_by: UUID | None
    author_id: UUID | None
    origin: Origin
    origin_session: str | None
    private_to: UUID | None
    status: MemoryStatus
    purged: bool
    injection_flags: list[str]  # why it looks aimed at AI agents (empty: it does not)


async def lock_promotable(conn: asyncpg.Connection, memory_id: UUID) -> Promotable | None:
    row = await conn.fetchrow(
        "SELECT id, project, content, content_hash, category, importance, tags, occurred_at,"
        " source,"
        " created_by, author_id, origin, origin_session, private_to, status,"
        " purged_at IS NOT NULL AS purged, injection_flags FROM memories WHERE id = $1"
        " FOR UPDATE",
        memory_id,
    )
    if row is None:
        return None
    return Promotable(**{**row, "category": Category(row["category"]),
                         "origin": Origin(row["origin"]),
                         "status": MemoryStatus(row["status"])})


# --- the review queue ---------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """A promotion waiting for review (or decided): the personal memory's text is a copy."""

    id: int
    memory_id: UUID
    project: str
    scope: str  # project | team
    content: str | None  # None once the memory was purged
    cause: str  # promotion | capture
    member_id: UUID | None
    author: str | None
    status: str  # pending | approved | rejected
    decided_by: str | None
    decision_reason: str | None
    result_id: UUID | None
    created_at: datetime


_PROMOTION = """
SELECT p.id, p.target_id AS memory_id, p.project, p.scope, p.proposed_text AS content,
       p.origin AS cause, p.member_id, mb.name AS author, p.status, p.decided_by,
       p.decision_reason, p.result_id, p.created_at
FROM memory_proposals p LEFT JOIN members mb ON mb.id = p.member_id
WHERE p.kind = 'promote'
"""


async def propose_promotion(
    conn: asyncpg.Connection, *, tenant_id: UUID, memory: Promotable, scope: str, cause: str,
    key_id: UUID | None,
) -> int | None:
    """Queue the promotion of ``memory`` for review; None when one is pending already."""
    held: int | None = await conn.fetchval(
        """
        INSERT INTO memory_proposals (tenant_id, project, kind, target_id, source_ids,
                                      proposed_text, origin, key_id, policy, scope, member_id)
        VALUES ($1, $2, 'promote', $3, ARRAY[$3]::uuid[], $4, $5, $6, 'review', $7, $8)
        ON CONFLICT (tenant_id, kind, target_id, source_ids) WHERE status = 'pending'
        DO NOTHING
        RETURNING id
        """,
        tenant_id, memory.project, memory.id, memory.content, cause, key_id, scope,
        memory.author_id,
    )
    return held


async def waiting(conn: asyncpg.Connection, project: str | None, limit: int) -> list[Promotion]:
    """The promotions waiting for review that Row-Level Security shows, oldest first (of one
    project, or of every project the caller reaches)."""
    rows = await conn.fetch(
        _PROMOTION + " AND p.status = 'pending' AND ($1::text IS NULL OR p.project = $1)"
        " ORDER BY p.id LIMIT $2",
        project, limit,
    )
    return many(Promotion, rows)


async def lock_waiting(conn: asyncpg.Connection, memory_id: UUID) -> Promotion | None:
    """The pending promotion of this memory, locked until the transaction ends."""
    return one(Promotion, await conn.fetchrow(
        _PROMOTION + " AND p.status = 'pending' AND p.target_id = $1 FOR UPDATE OF p",
        memory_id))


async def decide(conn: asyncpg.Connection, promotion_id: int, *, approved: bool,
                 decided_by: str, reason: str | None, result_id: UUID | None) -> bool:
    return await wrote(
        conn,
        "UPDATE memory_proposals SET status = $2, decided_by = $3, decided_at = now(),"
        " decision_reason = $4, result_id = $5 WHERE id = $1 AND status = 'pending'"
        " RETURNING id",
        promotion_id, "approved" if approved else "rejected", decided_by, reason, result_id,
    )


async def withdraw(conn: asyncpg.Connection, memory_ids: Sequence[UUID], why: str) -> int:
    """The pending proposals naming these memories (a promotion of one, a held merge or
    supersede of or into one), rejected: a memory was forgotten or purged, so nothing is
    left to share or to change as proposed. Returns how many."""
    rows = await conn.fetch(
        "UPDATE memory_proposals SET status = 'rejected', decided_by = 'system',"
        " decided_at = now(), decision_reason = $2"
        " WHERE status = 'pending' AND (target_id = ANY($1::uuid[])"
        "  OR (kind IN ('merge', 'supersede') AND source_ids && $1::uuid[]))"
        " RETURNING id",
        list(memory_ids), why,
    )
    return len(rows)
