"""Every SQL statement of the application, beside the pool (DDL lives in sql/).

Each function takes a connection already inside ``db.tenant_tx``: Row-Level Security, not
these WHERE clauses, is what keeps tenants apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from team_memory.models import Category, IngestInput, MemoryStatus

SET_TENANT = "SELECT set_config('app.tenant_id', $1, true)"

_MEMORY_COLUMNS = """
    id, project, content, category, importance, tags, status, source, duplicate_of,
    superseded_by, merged_from, valid_from, valid_to, created_at, occurred_at, updated_at
"""


# --- write path ---------------------------------------------------------------------------


async def insert_pending(conn: asyncpg.Connection, item: IngestInput) -> bool:
    """Insert the acknowledged memory as `pending` (searchable before its workflow commits).

    Returns False when a memory with that id already exists.
    """
    row = await conn.fetchval(
        """
        INSERT INTO memories (id, tenant_id, project, content, category, importance, tags,
                              content_hash, source, created_by, occurred_at, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending')
        ON CONFLICT (id) DO NOTHING
        RETURNING id
        """,
        item.memory_id, item.tenant_id, item.project, item.content, item.category.value,
        item.importance, item.tags, item.content_hash, item.source, item.key_id,
        item.occurred_at,
    )
    return row is not None


async def upsert_embedding(
    conn: asyncpg.Connection, item: IngestInput, embedding: np.ndarray
) -> None:
    """Store the vector on the memory row, creating the row if the server never wrote it."""
    await conn.execute(
        """
        INSERT INTO memories (id, tenant_id, project, content, category, importance, tags,
                              content_hash, source, created_by, occurred_at, status, embedding)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12)
        ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding
        WHERE memories.embedding IS NULL
        """,
        item.memory_id, item.tenant_id, item.project, item.content, item.category.value,
        item.importance, item.tags, item.content_hash, item.source, item.key_id,
        item.occurred_at, embedding,
    )


@dataclass(frozen=True)
class Neighbour:
    id: UUID
    content: str
    category: str
    content_hash: str
    similarity: float


async def similar_current(
    conn: asyncpg.Connection, memory_id: UUID, project: str, limit: int
) -> list[Neighbour]:
    """The live memories of the same project closest to ``memory_id`` (exact scan: a project's
    live set is small enough, and an approximate index could miss the one duplicate)."""
    rows = await conn.fetch(
        """
        WITH me AS (SELECT embedding, tenant_id FROM memories WHERE id = $1)
        SELECT m.id, m.content, m.category, m.content_hash,
               1 - ((m.embedding <=> me.embedding) + 0) AS similarity
        FROM memories m, me
        WHERE m.tenant_id = me.tenant_id AND m.project = $2 AND m.status = 'active'
          AND m.id <> $1 AND m.embedding IS NOT NULL
        ORDER BY (m.embedding <=> me.embedding) + 0
        LIMIT $3
        """,
        memory_id, project, limit,
    )
    return [Neighbour(r["id"], r["content"], r["category"], r["content_hash"],
                      float(r["similarity"])) for r in rows]


async def fetch_status(conn: asyncpg.Connection, memory_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, status, duplicate_of, superseded_by, content, project FROM memories"
        " WHERE id = $1",
        memory_id,
    )


async def activate(conn: asyncpg.Connection, memory_id: UUID) -> None:
    await conn.execute(
        "UPDATE memories SET status = 'active', updated_at = now()"
        " WHERE id = $1 AND status = 'pending'",
        memory_id,
    )


async def mark_duplicate(conn: asyncpg.Connection, memory_id: UUID, target_id: UUID) -> None:
    await conn.execute(
        "UPDATE memories SET status = 'duplicate', duplicate_of = $2, valid_to = now(),"
        " updated_at = now() WHERE id = $1 AND status = 'pending'",
        memory_id, target_id,
    )


async def update_content(
    conn: asyncpg.Connection, memory_id: UUID, content: str, merged_from: UUID,
    embedding: np.ndarray | None,
) -> str | None:
    """Rewrite a live memory with merged text; returns the text it had before."""
    before: str | None = await conn.fetchval(
        "SELECT content FROM memories WHERE id = $1 FOR UPDATE", memory_id
    )
    await conn.execute(
        """
        UPDATE memories SET content = $2, embedding = coalesce($4, embedding),
               merged_from = array_append(merged_from, $3), updated_at = now()
        WHERE id = $1
        """,
        memory_id, content, merged_from, embedding,
    )
    return before


async def supersede(conn: asyncpg.Connection, old_id: UUID, new_id: UUID) -> None:
    await conn.execute(
        "UPDATE memories SET status = 'superseded', superseded_by = $2, valid_to = now(),"
        " updated_at = now() WHERE id = $1 AND status = 'active'",
        old_id, new_id,
    )


async def forget(conn: asyncpg.Connection, memory_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE memories SET status = 'forgotten', valid_to = now(), updated_at = now()"
        " WHERE id = $1 AND status <> 'forgotten' RETURNING id, content",
        memory_id,
    )


async def insert_event(
    conn: asyncpg.Connection,
    *,
    tenant_id: UUID,
    memory_id: UUID,
    event: str,
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
        tenant_id, memory_id, event, reason, before_text, after_text, related_id, policy,
        model, input_tokens, output_tokens, None if detail is None else _json(detail),
    )


async def has_event(conn: asyncpg.Connection, memory_id: UUID, event: str) -> bool:
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM memory_events WHERE memory_id = $1 AND event = $2)",
        memory_id, event,
    )
    return bool(found)


# --- read path ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchFilters:
    projects: list[str]
    statuses: list[str]
    category: Category | None = None
    tags: list[str] | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filters(first: int) -> str:
    """The shared WHERE clause of the read path; its parameters start at ``$first``."""
    p = [f"${first + i}" for i in range(6)]
    return f"""
    m.project = ANY({p[0]}::text[]) AND m.status = ANY({p[1]}::text[])
    AND ({p[2]}::text IS NULL OR m.category = {p[2]})
    AND ({p[3]}::text[] IS NULL OR m.tags && {p[3]})
    AND ({p[4]}::timestamptz IS NULL OR m.occurred_at >= {p[4]})
    AND ({p[5]}::timestamptz IS NULL OR m.occurred_at < {p[5]})
"""


_FILTERS = _filters(2)

HYBRID_SEARCH = f"""
WITH vec AS (
    (SELECT m.id, m.embedding <=> $1 AS dist
     FROM memories m
     WHERE m.embedding IS NOT NULL AND {_FILTERS}
     ORDER BY m.embedding <=> $1
     LIMIT $9)
    UNION ALL
    -- acknowledged memories not embedded by their workflow yet, embedded by the caller
    SELECT p.id, p.vec::vector <=> $1 FROM unnest($15::uuid[], $16::text[]) AS p (id, vec)
), vec_ranked AS (
    SELECT id, dist, row_number() OVER (ORDER BY dist) AS rnk FROM vec
), query AS (
    SELECT replace(plainto_tsquery('english', $8)::text, '&', '|') AS text
), fts AS (
    SELECT m.id, ts_rank_cd(m.search_text, q.tsq) AS rank
    FROM memories m, (SELECT to_tsquery('english', text) AS tsq FROM query
                      WHERE text <> '') q
    WHERE m.search_text @@ q.tsq AND {_FILTERS}
    ORDER BY rank DESC
    LIMIT $9
), fts_ranked AS (
    SELECT id, row_number() OVER (ORDER BY rank DESC) AS rnk FROM fts
), fused AS (
    SELECT coalesce(v.id, f.id) AS id,
           coalesce(1.0 / ($10 + v.rnk), 0) + coalesce(1.0 / ($10 + f.rnk), 0) AS rrf,
           v.dist
    FROM vec_ranked v FULL JOIN fts_ranked f ON f.id = v.id
)
SELECT m.id, m.project, m.category, m.content, m.importance, m.status, m.occurred_at,
       fused.rrf
         * (1 + $11 * (m.importance - 1))
         * (1 - $12 + $12 * exp(-ln(2) * extract(epoch FROM now() - m.occurred_at)
                                 / ($13 * 86400.0))) AS score
FROM fused JOIN memories m ON m.id = fused.id
ORDER BY score DESC, m.occurred_at DESC
LIMIT $14
"""


@dataclass(frozen=True)
class RankWeights:
    rrf_k: float = 60.0
    importance_boost: float = 0.1
    recency_weight: float = 0.3
    half_life_days: float = 90.0


async def hybrid_search(
    conn: asyncpg.Connection,
    query_vector: np.ndarray,
    query_text: str,
    filters: SearchFilters,
    limit: int,
    weights: RankWeights,
    candidates: int,
    pending: PendingVectors | None = None,
) -> list[asyncpg.Record]:
    await conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, candidates))}")
    pending = pending or PendingVectors(ids=[], vectors=[])
    rows: list[asyncpg.Record] = await conn.fetch(
        HYBRID_SEARCH,
        query_vector, filters.projects, filters.statuses,
        None if filters.category is None else filters.category.value,
        filters.tags or None, filters.since, filters.until, query_text, candidates,
        weights.rrf_k, weights.importance_boost, weights.recency_weight,
        weights.half_life_days, limit, pending.ids, [_vector_text(v) for v in pending.vectors],
    )
    return rows


@dataclass(frozen=True)
class PendingVectors:
    ids: list[UUID]
    vectors: list[np.ndarray]


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


async def pending_without_embedding(
    conn: asyncpg.Connection, filters: SearchFilters, limit: int
) -> list[asyncpg.Record]:
    """Acknowledged memories whose workflow has not embedded them yet (read-your-writes)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT m.id, m.project, m.category, m.content, m.importance, m.status, m.occurred_at
        FROM memories m
        WHERE m.embedding IS NULL AND m.status = 'pending' AND {_filters(1)}
        ORDER BY m.created_at DESC
        LIMIT $7
        """,
        filters.projects, [MemoryStatus.PENDING.value],
        None if filters.category is None else filters.category.value,
        filters.tags or None, filters.since, filters.until, limit,
    )
    return rows


async def get_memory(conn: asyncpg.Connection, memory_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE id = $1",
                               memory_id)


async def get_memories(conn: asyncpg.Connection, ids: list[UUID]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE id = ANY($1::uuid[])", ids
    )
    return rows


async def memory_events(conn: asyncpg.Connection, memory_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT event, created_at, reason, related_id, policy, model FROM memory_events"
        " WHERE memory_id = $1 ORDER BY id",
        memory_id,
    )
    return rows


async def recent_important(
    conn: asyncpg.Connection, projects: list[str], since: datetime, min_importance: int,
    limit: int,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {_MEMORY_COLUMNS} FROM memories
        WHERE project = ANY($1::text[]) AND status IN ('pending', 'active')
          AND created_at >= $2 AND importance >= $3
        ORDER BY importance DESC, created_at DESC
        LIMIT $4
        """,
        projects, since, min_importance, limit,
    )
    return rows


# --- tenants and keys ---------------------------------------------------------------------


async def authenticate_key(conn: asyncpg.Connection, key_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM authenticate_key($1)", key_hash)


async def tenant_by_name(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, name, created_at FROM tenants WHERE name = $1", name)


async def insert_tenant(conn: asyncpg.Connection, tenant_id: UUID, name: str) -> None:
    await conn.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        tenant_id, name,
    )


async def insert_key(
    conn: asyncpg.Connection, *, key_id: UUID, tenant_id: UUID, name: str, prefix: str,
    key_hash: str, project: str | None, read_only: bool,
) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, project, read_only)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        key_id, tenant_id, name, prefix, key_hash, project, read_only,
    )


async def list_keys(conn: asyncpg.Connection, tenant_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, name, prefix, project, read_only, created_at, revoked_at FROM api_keys"
        " WHERE tenant_id = $1 ORDER BY created_at",
        tenant_id,
    )
    return rows


async def revoke_key(conn: asyncpg.Connection, key_id: UUID) -> bool:
    done = await conn.fetchval(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
        " RETURNING id",
        key_id,
    )
    return done is not None


# --- schema -------------------------------------------------------------------------------

SCHEMA_TABLE_EXISTS = "SELECT to_regclass('public.schema_migrations') IS NOT NULL"
CREATE_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
APPLIED_VERSIONS = "SELECT version FROM schema_migrations ORDER BY version"
RECORD_VERSION = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
SCHEMA_INFO_GET = "SELECT value FROM schema_info WHERE key = $1"
SCHEMA_INFO_SET = (
    "INSERT INTO schema_info (key, value) VALUES ($1, $2)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
ROLE_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)"
LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(7468207)"


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value, default=str)


# --- operations (`team-memory status`, run as the schema owner) ----------------------------


async def list_tenants(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch("SELECT id, name FROM tenants ORDER BY name")
    return rows


async def count_by_status(conn: asyncpg.Connection) -> dict[str, int]:
    """Memories of the transaction's tenant per status."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM memories GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}
