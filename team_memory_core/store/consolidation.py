"""The nightly consolidation (workflows/consolidate.py): the projects to schedule, runs,
neighbourhoods to review, the changes a review applies, decay, and the manifesto.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from team_memory_core.contract import Policy
from team_memory_core.models.consolidation import ManifestoRule
from team_memory_core.models.memories import Category, MemoryStatus
from team_memory_core.store.rows import many

# A memory counts as reviewed when the run looked at it after its last change and it is not
# flagged for review.
_REVIEWED = "(m.consolidated_at IS NOT NULL AND m.consolidated_at >= m.updated_at" \
    " AND NOT m.needs_review)"


async def register_project(conn: asyncpg.Connection, tenant_id: UUID, project: str) -> bool:
    """Record that the project holds memories; True while its schedule is not created yet.

    One statement: the SELECT does not see the row its own INSERT adds (one snapshot), so a
    new row answers through ``added``; a row another transaction added meanwhile and this
    snapshot misses counts as missing (one more, harmless, ensure)."""
    missing = await conn.fetchval(
        """
        WITH added AS (
            INSERT INTO memory_projects (tenant_id, project) VALUES ($1, $2)
            ON CONFLICT (tenant_id, project) DO NOTHING
            RETURNING true
        )
        SELECT EXISTS (SELECT FROM added) OR coalesce(
            (SELECT schedule_ensured_at IS NULL FROM memory_projects
             WHERE tenant_id = $1 AND project = $2), true)
        """,
        tenant_id, project,
    )
    return bool(missing)


async def mark_schedule_ensured(
    conn: asyncpg.Connection, tenant_id: UUID, project: str, schedule_id: str
) -> None:
    await conn.execute(
        "UPDATE memory_projects SET schedule_id = $3, schedule_ensured_at = now()"
        " WHERE tenant_id = $1 AND project = $2",
        tenant_id, project, schedule_id,
    )


@dataclass(frozen=True)
class ProjectScope:
    tenant_id: UUID
    tenant_name: str
    project: str


async def consolidation_scopes(conn: asyncpg.Connection) -> list[ProjectScope]:
    """Every (tenant, project) with memories, across tenants (SECURITY DEFINER function)."""
    rows = await conn.fetch("SELECT tenant_id, tenant_name, project FROM consolidation_scopes()")
    return many(ProjectScope, rows)


async def insert_run(
    conn: asyncpg.Connection, *, run_id: UUID, tenant_id: UUID, project: str,
    workflow_id: str, policy: str, model: str | None, token_budget: int,
) -> None:
    await conn.execute(
        """
        INSERT INTO consolidation_runs (id, tenant_id, project, workflow_id, policy, model,
                                        token_budget)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (id) DO NOTHING
        """,
        run_id, tenant_id, project, workflow_id, policy, model, token_budget,
    )


async def finish_run(
    conn: asyncpg.Connection, run_id: UUID, input_tokens: int, output_tokens: int,
    report: dict[str, Any],
) -> None:
    await conn.execute(
        """
        UPDATE consolidation_runs
        SET status = 'completed', input_tokens = $2, output_tokens = $3,
            report = $4::jsonb, finished_at = coalesce(finished_at, now())
        WHERE id = $1
        """,
        run_id, input_tokens, output_tokens, report,
    )


@dataclass(frozen=True)
class Neighbourhood:
    """A seed and one of its neighbours (None: a seed without any), each reviewed or not."""

    seed: UUID
    needs_review: bool
    reviewed: bool
    neighbour: UUID | None
    neighbour_reviewed: bool | None


async def neighbourhoods(
    conn: asyncpg.Connection, project: str, cursor: UUID | None, page_size: int,
    neighbours: int, min_similarity: float,
) -> list[Neighbourhood]:
    """One page of active memories (keyset by id), each with its nearest active neighbours
    of the same reach (shared with shared, a member's personal with the same member's: as in
    ``similar_current``, nothing is ever merged or folded across that line).

    A seed flagged for review gets its neighbours whatever their similarity. Exact scan, as in
    ``similar_current``: a filtered HNSW scan can miss the one neighbour that matters. Memories
    flagged as aimed at AI agents take no part: their text never flows into another memory.
    """
    rows = await conn.fetch(
        f"""
        WITH seeds AS (
            SELECT m.id, m.embedding, m.needs_review, m.private_to, {_REVIEWED} AS reviewed
            FROM memories m
            WHERE m.project = $1 AND m.status = 'active' AND m.embedding IS NOT NULL
              AND cardinality(m.injection_flags) = 0 AND ($2::uuid IS NULL OR m.id > $2)
            ORDER BY m.id
            LIMIT $3
        )
        SELECT s.id AS seed, s.needs_review, s.reviewed, n.id AS neighbour,
               n.reviewed AS neighbour_reviewed
        FROM seeds s
        LEFT JOIN LATERAL (
            SELECT m.id, {_REVIEWED} AS reviewed,
                   1 - ((m.embedding <=> s.embedding) + 0) AS similarity
            FROM memories m
            WHERE m.project = $1 AND m.status = 'active' AND m.id <> s.id
              AND m.embedding IS NOT NULL AND cardinality(m.injection_flags) = 0
              AND m.private_to IS NOT DISTINCT FROM s.private_to
            ORDER BY (m.embedding <=> s.embedding) + 0
            LIMIT $4
        ) n ON n.similarity >= $5 OR s.needs_review
        ORDER BY s.id, n.similarity DESC
        """,
        project, cursor, page_size, neighbours, min_similarity,
    )
    return many(Neighbourhood, rows)


@dataclass(frozen=True)
class ClusterMember:
    """A memory of a cluster under review, as the review's transaction locked it."""

    id: UUID
    content: str
    category: Category
    importance: int
    occurred_at: datetime
    status: MemoryStatus
    content_hash: str
    embedding: np.ndarray | None
    needs_review: bool
    author_id: UUID | None
    private_to: UUID | None
    reviewed: bool


async def lock_cluster(conn: asyncpg.Connection, ids: list[UUID]) -> list[ClusterMember]:
    """The cluster's memories, locked for the review's transaction, oldest first."""
    rows = await conn.fetch(
        f"""
        SELECT m.id, m.content, m.category, m.importance, m.occurred_at, m.status,
               m.content_hash, m.embedding::vector AS embedding, m.needs_review,
               m.author_id, m.private_to,
               {_REVIEWED} AS reviewed
        FROM memories m WHERE m.id = ANY($1::uuid[])
        ORDER BY m.occurred_at, m.id
        FOR UPDATE
        """,
        ids,
    )
    return [ClusterMember(**{**row, "category": Category(row["category"]),
                             "status": MemoryStatus(row["status"])}) for row in rows]


async def fold_into(
    conn: asyncpg.Connection, keep_id: UUID, others: list[UUID], content: str,
    embedding: np.ndarray,
) -> None:
    """``keep_id`` takes the merged text and the others' ids as provenance."""
    await conn.execute(
        """
        UPDATE memories SET content = $2, embedding = $4,
               merged_from = merged_from || $3::uuid[], origin = 'merge', updated_at = now()
        WHERE id = $1
        """,
        keep_id, content, others, embedding,
    )


async def mark_reviewed(conn: asyncpg.Connection, ids: list[UUID]) -> None:
    await conn.execute(
        "UPDATE memories SET consolidated_at = now(), needs_review = false"
        " WHERE id = ANY($1::uuid[]) AND status = 'active'",
        ids,
    )


async def archive_stale(
    conn: asyncpg.Connection, *, tenant_id: UUID, project: str, max_importance: int,
    half_life_days: float, threshold: float, run_id: UUID,
) -> int:
    """Archive active memories whose decayed weight fell below ``threshold``, with events."""
    rows = await conn.fetch(
        """
        WITH stale AS (
            SELECT id, importance * power(0.5, extract(epoch FROM now() - occurred_at)
                                               / ($4 * 86400.0)) AS weight
            FROM memories
            WHERE project = $2 AND status = 'active' AND importance <= $3
            FOR UPDATE
        ), archived AS (
            UPDATE memories m SET status = 'archived', valid_to = now(), updated_at = now()
            FROM stale s WHERE m.id = s.id AND s.weight < $5
            RETURNING m.id, s.weight
        )
        INSERT INTO memory_events (tenant_id, memory_id, event, reason, policy, detail)
        SELECT $1, a.id, 'archived',
               format('decayed: weight %s below %s', round(a.weight::numeric, 3), $5),
               'local', jsonb_build_object('run_id', $6::text)
        FROM archived a
        RETURNING memory_id
        """,
        tenant_id, project, max_importance, half_life_days, threshold, str(run_id),
    )
    return len(rows)


@dataclass(frozen=True)
class WeightedMemory:
    id: UUID
    category: Category
    content: str
    importance: int
    weight: float  # importance x recency decay


async def top_memories(
    conn: asyncpg.Connection, project: str, half_life_days: float, limit: int
) -> list[WeightedMemory]:
    """The project's active shared memories ranked by importance x recency (the manifesto's
    input: personal memories never reach it), those flagged as aimed at AI agents left out:
    the manifesto is read as the team's rules."""
    rows = await conn.fetch(
        """
        SELECT id, category, content, importance,
               importance * power(0.5, extract(epoch FROM now() - occurred_at)
                                       / ($2 * 86400.0)) AS weight
        FROM memories
        WHERE project = $1 AND status = 'active' AND cardinality(injection_flags) = 0
          AND private_to IS NULL
        ORDER BY weight DESC, id
        LIMIT $3
        """,
        project, half_life_days, limit,
    )
    return [WeightedMemory(id=row["id"], category=Category(row["category"]),
                           content=row["content"], importance=row["importance"],
                           weight=float(row["weight"])) for row in rows]


@dataclass(frozen=True)
class Manifesto:
    project: str
    rules: list[ManifestoRule]
    fingerprint: str  # of its inputs (unchanged inputs: no rewrite)
    policy: Policy
    model: str | None
    generated_at: datetime


async def manifesto(conn: asyncpg.Connection, project: str) -> Manifesto | None:
    row = await conn.fetchrow(
        "SELECT project, rules, fingerprint, policy, model, generated_at FROM manifestos"
        " WHERE project = $1",
        project,
    )
    if row is None:
        return None
    rules = [ManifestoRule.model_validate(rule) for rule in row["rules"]]
    return Manifesto(**{**row, "rules": rules, "policy": Policy(row["policy"])})


async def upsert_manifesto(
    conn: asyncpg.Connection, *, tenant_id: UUID, project: str, rules: list[ManifestoRule],
    fingerprint: str, policy: str, model: str | None, input_tokens: int | None,
    output_tokens: int | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO manifestos (tenant_id, project, rules, fingerprint, policy, model,
                                input_tokens, output_tokens)
        VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8)
        ON CONFLICT (tenant_id, project) DO UPDATE
        SET rules = EXCLUDED.rules, fingerprint = EXCLUDED.fingerprint,
            policy = EXCLUDED.policy, model = EXCLUDED.model,
            input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
            generated_at = now()
        """,
        tenant_id, project, [rule.model_dump(mode="json") for rule in rules], fingerprint,
        policy, model, input_tokens, output_tokens,
    )
