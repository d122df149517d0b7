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

    def params(self) -> tuple[Any, ...]:
        """The six parameters of ``_filters``, in order."""
        return (self.projects, self.statuses,
                None if self.category is None else self.category.value,
                self.tags or None, self.since, self.until)


def _filters(first: int, alias: str = "m") -> str:
    """The shared WHERE clause of the read path; its parameters start at ``$first``."""
    p = [f"${first + i}" for i in range(6)]
    m = alias
    return f"""
    {m}.project = ANY({p[0]}::text[]) AND {m}.status = ANY({p[1]}::text[])
    AND ({p[2]}::text IS NULL OR {m}.category = {p[2]})
    AND ({p[3]}::text[] IS NULL OR {m}.tags && {p[3]})
    AND ({p[4]}::timestamptz IS NULL OR {m}.occurred_at >= {p[4]})
    AND ({p[5]}::timestamptz IS NULL OR {m}.occurred_at < {p[5]})
"""


@dataclass(frozen=True)
class ScopeStats:
    """BM25 collection statistics of a search scope, and the table size (HNSW ef_search)."""

    rows: int
    avg_length: float
    table_rows: int


async def scope_stats(
    conn: asyncpg.Connection, projects: list[str], statuses: list[str]
) -> ScopeStats:
    """Rows and mean document length (distinct lexemes) of the current memories of a scope."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS rows, coalesce(avg(length(m.search_text)), 0) AS avg_length,
               (SELECT greatest(reltuples, 0)::bigint FROM pg_class
                WHERE oid = 'memories'::regclass) AS table_rows
        FROM memories m
        WHERE m.project = ANY($1::text[]) AND m.status = ANY($2::text[])
        """,
        projects, statuses,
    )
    assert row is not None
    return ScopeStats(rows=int(row["rows"]), avg_length=float(row["avg_length"]),
                      table_rows=int(row["table_rows"]))


async def query_lexemes(
    conn: asyncpg.Connection, query_text: str, projects: list[str], statuses: list[str],
    known: list[str], cap: int,
) -> list[tuple[str, int | None]]:
    """The query's lexemes (english stemming, no stop words) with their document frequency
    in the scope, counted up to ``cap + 1`` rows (so a common word costs at most that);
    lexemes in ``known`` (frequencies the caller has cached) come back with None."""
    rows = await conn.fetch(
        """
        SELECT q.lexeme,
               CASE WHEN q.lexeme = ANY($4::text[]) THEN NULL ELSE
                 (SELECT count(*) FROM (
                    SELECT 1 FROM memories m
                    WHERE m.search_text @@ to_tsquery('simple', quote_literal(q.lexeme))
                      AND m.project = ANY($2::text[]) AND m.status = ANY($3::text[])
                    LIMIT $5 + 1) hits)
               END AS df
        FROM unnest(to_tsvector('english', $1)) AS q
        """,
        query_text, projects, statuses, known, cap,
    )
    return [(r["lexeme"], None if r["df"] is None else int(r["df"])) for r in rows]


async def lexeme_frequencies(
    conn: asyncpg.Connection, lexemes: list[str], projects: list[str], statuses: list[str]
) -> dict[str, int]:
    """Exact document frequencies (the expensive count, cached by the caller)."""
    rows = await conn.fetch(
        """
        SELECT l.lexeme,
               (SELECT count(*) FROM memories m
                WHERE m.search_text @@ to_tsquery('simple', quote_literal(l.lexeme))
                  AND m.project = ANY($2::text[]) AND m.status = ANY($3::text[])) AS df
        FROM unnest($1::text[]) AS l (lexeme)
        """,
        lexemes, projects, statuses,
    )
    return {r["lexeme"]: int(r["df"]) for r in rows}


_VECTOR_CANDIDATES = f"""
SELECT m.id FROM memories m
WHERE m.embedding IS NOT NULL AND {_filters(2)}
ORDER BY m.embedding <=> $1
LIMIT $8
"""
# "+ 0" keeps the planner off the HNSW index: an exact scan of the scope, complete by design.
_VECTOR_CANDIDATES_EXACT = _VECTOR_CANDIDATES.replace(
    "ORDER BY m.embedding <=> $1", "ORDER BY (m.embedding <=> $1) + 0"
)


async def vector_candidates(
    conn: asyncpg.Connection, query_vector: np.ndarray, filters: SearchFilters, limit: int,
    *, exact: bool, ef_search: int = 40,
) -> list[UUID]:
    """The ``limit`` nearest memories of the filtered scope: by HNSW (approximate; with
    filters it can return fewer rows than exist, pgvector 0.6 has no iterative scans) or
    by an exact scan."""
    if not exact:
        await conn.execute(f"SET LOCAL hnsw.ef_search = {max(1, min(1000, int(ef_search)))}")
    rows = await conn.fetch(_VECTOR_CANDIDATES_EXACT if exact else _VECTOR_CANDIDATES,
                            query_vector, *filters.params(), limit)
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class PendingVectors:
    ids: list[UUID]
    vectors: list[np.ndarray]


@dataclass(frozen=True)
class LexicalQuery:
    """Scored lexemes with their BM25 idf, and the (rarer) ones that pick candidates."""

    lexemes: list[str]
    idf: list[float]
    candidate_lexemes: list[str]
    avg_length: float
    k1: float
    b: float


HYBRID_CANDIDATES = f"""
WITH ql AS (
    SELECT lex, idf FROM unnest($8::text[], $9::float8[]) AS t (lex, idf)
), orq AS (
    SELECT to_tsquery('simple', string_agg(quote_literal(c), ' | ')) AS tsq
    FROM unnest($10::text[]) AS c
), fts AS (
    SELECT m.id FROM memories m, orq
    WHERE m.search_text @@ orq.tsq AND {_filters(2)}
    ORDER BY ts_rank(m.search_text, orq.tsq) DESC
    LIMIT $11
), pend AS (
    -- acknowledged memories not embedded by their workflow yet, embedded by the caller
    SELECT p.id, p.vec::vector AS embedding FROM unnest($13::uuid[], $14::text[]) AS p (id, vec)
), cand AS (
    SELECT m.id, m.tenant_id, m.project, m.seq
    FROM memories m
    WHERE m.id IN (SELECT id FROM fts UNION SELECT unnest($12::uuid[])
                   UNION SELECT id FROM pend)
      AND {_filters(2)}
), nb AS (
    -- the memories next to each candidate in insertion order, in the same project
    SELECT c.id AS cid, n.id AS nid
    FROM cand c, LATERAL (
        (SELECT m.id FROM memories m
         WHERE m.tenant_id = c.tenant_id AND m.project = c.project AND m.seq < c.seq
           AND {_filters(2)}
         ORDER BY m.seq DESC LIMIT $18)
        UNION ALL
        (SELECT m.id FROM memories m
         WHERE m.tenant_id = c.tenant_id AND m.project = c.project AND m.seq > c.seq
           AND {_filters(2)}
         ORDER BY m.seq LIMIT $18)
    ) n
), links AS (
    SELECT cid, array_agg(nid) AS neighbours FROM nb GROUP BY cid
), picked AS (
    SELECT id FROM cand UNION SELECT nid FROM nb
)
SELECT m.id, m.project, m.category, m.content, m.importance, m.status, m.occurred_at,
       coalesce(1 - (coalesce(m.embedding, pend.embedding) <=> $1), 0) AS cosine,
       coalesce((
           SELECT sum(ql.idf * t.tf * ($16::float8 + 1)
                      / (t.tf + $16::float8 * (1 - $17::float8 + $17::float8
                                              * length(m.search_text) / $15::float8)))
           FROM (SELECT lexeme, coalesce(cardinality(positions), 1) AS tf
                 FROM unnest(m.search_text)) t
           JOIN ql ON ql.lex = t.lexeme), 0) AS bm25,
       links.neighbours
FROM picked JOIN memories m ON m.id = picked.id
LEFT JOIN pend ON pend.id = m.id
LEFT JOIN links ON links.cid = m.id
"""


async def hybrid_candidates(
    conn: asyncpg.Connection,
    query_vector: np.ndarray,
    filters: SearchFilters,
    lexical: LexicalQuery,
    vector_ids: list[UUID],
    pending: PendingVectors,
    *,
    candidates: int,
    neighbours: int,
) -> list[asyncpg.Record]:
    """Keyword candidates, the given vector candidates and pending memories, plus the
    ``neighbours`` memories on each side of each in insertion order; every row with its
    cosine similarity, BM25 score and (for candidates) neighbour ids. Fusion is the caller's."""
    rows: list[asyncpg.Record] = await conn.fetch(
        HYBRID_CANDIDATES,
        query_vector, *filters.params(), lexical.lexemes, lexical.idf,
        lexical.candidate_lexemes, candidates, vector_ids, pending.ids,
        [_vector_text(v) for v in pending.vectors], max(lexical.avg_length, 1.0),
        lexical.k1, lexical.b, neighbours,
    )
    return rows


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


async def important_recent(
    conn: asyncpg.Connection, filters: SearchFilters, importance_boost: float,
    recency_weight: float, half_life_days: float, limit: int,
) -> list[asyncpg.Record]:
    """Current memories ranked by importance x recency alone (a working set with no query)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {_MEMORY_COLUMNS},
               (1 + $7::float8 * (importance - 1))
               * (1 - $8::float8 + $8::float8
                  * exp(-ln(2) * greatest(extract(epoch FROM now() - occurred_at), 0)
                        / ($9::float8 * 86400.0))) AS score
        FROM memories m
        WHERE {_filters(1)}
        ORDER BY score DESC, seq DESC
        LIMIT $10
        """,
        *filters.params(), importance_boost, recency_weight, half_life_days, limit,
    )
    return rows


async def export_page(
    conn: asyncpg.Connection, project: str, statuses: list[str], after_seq: int, limit: int
) -> list[asyncpg.Record]:
    """One page of a project's memories in insertion order (export)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {_MEMORY_COLUMNS}, seq FROM memories
        WHERE project = $1 AND status = ANY($2::text[]) AND seq > $3
        ORDER BY seq
        LIMIT $4
        """,
        project, statuses, after_seq, limit,
    )
    return rows


async def pending_ids(conn: asyncpg.Connection, ids: list[UUID]) -> list[UUID]:
    """Those of ``ids`` still waiting for their workflow to commit them."""
    rows = await conn.fetch(
        "SELECT id FROM memories WHERE id = ANY($1::uuid[]) AND status = 'pending'", ids
    )
    return [r["id"] for r in rows]


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
