"""Every SQL statement of the application, beside the pool (DDL lives in sql/).

Each function takes a connection already inside ``db.tenant_tx``: Row-Level Security, not
these WHERE clauses, is what keeps tenants apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from team_memory_core.models import Category, IngestInput, ManifestoRule, MemoryStatus
from team_memory_core.rules.redaction import redact

SET_TENANT = "SELECT set_config('app.tenant_id', $1, true)"

_MEMORY_COLUMNS = """
    id, project, content, category, importance, tags, status, source, duplicate_of,
    superseded_by, merged_from, valid_from, valid_to, created_at, occurred_at, updated_at,
    content_hash, generation
"""


# --- write path ---------------------------------------------------------------------------


async def insert_pending(conn: asyncpg.Connection, item: IngestInput) -> bool:
    """Insert the acknowledged memory as `pending` (searchable before its workflow commits).

    Returns False when a memory with that id already exists.
    """
    row = await conn.fetchval(
        """
        INSERT INTO memories (id, tenant_id, project, content, category, importance, tags,
                              content_hash, source, created_by, occurred_at, generation,
                              status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending')
        ON CONFLICT (id) DO NOTHING
        RETURNING id
        """,
        item.memory_id, item.tenant_id, item.project, item.content, item.category.value,
        item.importance, item.tags, item.content_hash, item.source, item.key_id,
        item.occurred_at, item.generation,
    )
    return row is not None


async def upsert_embedding(
    conn: asyncpg.Connection, item: IngestInput, embedding: np.ndarray
) -> None:
    """Store the vector on the memory row, creating the row if the server never wrote it."""
    await conn.execute(
        """
        INSERT INTO memories (id, tenant_id, project, content, category, importance, tags,
                              content_hash, source, created_by, occurred_at, generation,
                              status, embedding)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13)
        ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding
        WHERE memories.embedding IS NULL AND memories.purged_at IS NULL
        """,
        item.memory_id, item.tenant_id, item.project, item.content, item.category.value,
        item.importance, item.tags, item.content_hash, item.source, item.key_id,
        item.occurred_at, item.generation, embedding,
    )


@dataclass(frozen=True)
class Neighbour:
    id: UUID
    content: str
    category: str
    content_hash: str
    similarity: float
    author: UUID | None = None  # the key that saved it (None: not recorded)


async def similar_current(
    conn: asyncpg.Connection, memory_id: UUID, project: str, limit: int
) -> list[Neighbour]:
    """The live memories of the same project closest to ``memory_id`` (exact scan: a project's
    live set is small enough, and an approximate index could miss the one duplicate)."""
    rows = await conn.fetch(
        """
        WITH me AS (SELECT embedding, tenant_id FROM memories WHERE id = $1)
        SELECT m.id, m.content, m.category, m.content_hash, m.created_by,
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
                      float(r["similarity"]), r["created_by"]) for r in rows]


async def fetch_status(
    conn: asyncpg.Connection, memory_id: UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    """``for_update``: locked until the transaction ends (a concurrent forget waits)."""
    return await conn.fetchrow(
        "SELECT id, status, duplicate_of, superseded_by, content, project FROM memories"
        " WHERE id = $1" + (" FOR UPDATE" if for_update else ""),
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


def _filters(first: int, alias: str = "m", *, project: bool = True) -> str:
    """The shared WHERE clause of the read path; its parameters start at ``$first``.
    ``project=False`` leaves the project out (``$first`` still counts): for rows already
    pinned to one project of the scope, where ``project = ANY(...)`` would join the index
    condition and cost the index order."""
    p = [f"${first + i}" for i in range(6)]
    m = alias
    in_project = f"{m}.project = ANY({p[0]}::text[]) AND " if project else ""
    return f"""
    {in_project}{m}.status = ANY({p[1]}::text[])
    AND ({p[2]}::text IS NULL OR {m}.category = {p[2]})
    AND ({p[3]}::text[] IS NULL OR {m}.tags && {p[3]})
    AND ({p[4]}::timestamptz IS NULL OR {m}.occurred_at >= {p[4]})
    AND ({p[5]}::timestamptz IS NULL OR {m}.occurred_at < {p[5]})
"""


@dataclass(frozen=True)
class Term:
    """A query word (english stem) and how many active memories of the scope hold it."""

    lexeme: str
    docs: int


@dataclass(frozen=True)
class SearchTerms:
    """BM25 collection statistics of a scope and the query's words."""

    docs: int
    avg_length: float
    terms: list[Term]


async def search_terms(
    conn: asyncpg.Connection, text: str, projects: list[str], vector_candidates: int
) -> SearchTerms:
    """Read from the trigger-maintained ``memory_scopes`` / ``memory_lexemes``
    (sql/006_search_stats.sql). Also prepares the rest of the transaction for
    ``hybrid_search``: HNSW ef_search scaled by the scope's share of the table (filters keep
    about that share of what the index returns), and custom plans: with its limits and
    optional filters as unknown parameters, a generic plan sorts every memory of the project
    to find a candidate's two neighbours."""
    rows = await conn.fetch(
        """
        WITH scope AS (
            SELECT coalesce(sum(docs), 0) AS docs, coalesce(sum(lexemes), 0) AS lexemes,
                   (SELECT greatest(reltuples, 0)::bigint FROM pg_class
                    WHERE oid = 'memories'::regclass) AS table_rows
            FROM memory_scopes WHERE project = ANY($2::text[])
        ), prepared AS (
            SELECT scope.*,
                   set_config('plan_cache_mode', 'force_custom_plan', true) AS plans,
                   set_config('hnsw.ef_search', least(1000, greatest(40, ceil(
                       2.0 * $3 * greatest(scope.table_rows, scope.docs, 1)
                       / greatest(scope.docs, 1))))::int::text, true) AS ef_search
            FROM scope
        )
        SELECT p.docs, p.lexemes, p.plans, p.ef_search, t.lexeme, t.df
        FROM prepared p LEFT JOIN LATERAL (
            SELECT q.lexeme, coalesce(sum(s.docs), 0) AS df
            FROM unnest(to_tsvector('english', $1)) AS q
            LEFT JOIN memory_lexemes s ON s.lexeme = q.lexeme AND s.project = ANY($2::text[])
            GROUP BY q.lexeme
        ) t ON true
        """,
        text, projects, vector_candidates,
    )
    first = rows[0]
    docs = int(first["docs"])
    return SearchTerms(
        docs=docs, avg_length=max(int(first["lexemes"]) / docs, 1.0) if docs else 1.0,
        terms=[Term(r["lexeme"], int(r["df"])) for r in rows if r["lexeme"] is not None],
    )


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
        await set_ef_search(conn, ef_search)
    rows = await conn.fetch(_VECTOR_CANDIDATES_EXACT if exact else _VECTOR_CANDIDATES,
                            query_vector, *filters.params(), limit)
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class PendingVectors:
    ids: list[UUID]
    vectors: list[np.ndarray]


@dataclass(frozen=True)
class HybridQuery:
    """What one hybrid search statement needs besides the vector, the filters and the
    pending memories."""

    lexemes: list[str]
    idf: list[float]
    keyword_lexemes: list[str]  # the words that select keyword candidates
    avg_length: float
    keyword_candidates: int
    vector_candidates: int
    exact: bool  # exact vector scan, or the HNSW index (ef_search set by search_terms)
    neighbours: int
    k1: float
    b: float


def _bm25(tf: str, length: str) -> str:
    """One query word's Okapi BM25 contribution (idf from ``ql``; k1 $15, b $16, mean
    document length $11), for a term frequency and a document length."""
    return (f"ql.idf * {tf} * ($15::float8 + 1) / ({tf} + $15::float8 * "
            f"(1 - $16::float8 + $16::float8 * {length} / $11::float8))")


# Every candidate row comes back with its cosine, its BM25 score and its insertion-order
# neighbours; vector_found tells the caller whether an HNSW pass came back short.
_HYBRID_SEARCH = f"""
WITH ql AS (
    SELECT lex, idf FROM unnest($9::text[], $10::float8[]) AS t (lex, idf)
), fts AS (
    -- BM25 over the selecting words, from the postings; then the filters, best first
    SELECT r.id FROM (
        SELECT p.memory_id AS id, sum({_bm25("p.tf", "p.doc_length")}) AS score
        FROM memory_postings p JOIN ql ON ql.lex = p.lexeme
        WHERE p.project = ANY($2::text[]) AND p.lexeme = ANY($8::text[])
        GROUP BY p.memory_id
        ORDER BY score DESC
    ) r JOIN memories m ON m.id = r.id
    WHERE {_filters(2)}
    ORDER BY r.score DESC
    LIMIT $12
), vec AS (
    SELECT m.id FROM memories m
    WHERE m.embedding IS NOT NULL AND {_filters(2)}
    ORDER BY m.embedding <=> $1
    LIMIT $18
), pend AS (
    -- acknowledged memories not embedded by their workflow yet, embedded by the caller
    SELECT p.id, p.vec::vector AS embedding FROM unnest($13::uuid[], $14::text[]) AS p (id, vec)
), cand AS (
    SELECT m.id, m.tenant_id, m.project, m.seq
    FROM memories m
    WHERE m.id IN (SELECT id FROM fts UNION SELECT id FROM vec UNION SELECT id FROM pend)
      AND {_filters(2)}
), nb AS (
    -- the memories next to each candidate in insertion order, in the same project
    SELECT c.id AS cid, n.id AS nid
    FROM cand c, LATERAL (
        (SELECT m.id FROM memories m
         WHERE m.tenant_id = c.tenant_id AND m.project = c.project AND m.seq < c.seq
           AND {_filters(2, project=False)}
         ORDER BY m.seq DESC LIMIT $17)
        UNION ALL
        (SELECT m.id FROM memories m
         WHERE m.tenant_id = c.tenant_id AND m.project = c.project AND m.seq > c.seq
           AND {_filters(2, project=False)}
         ORDER BY m.seq LIMIT $17)
    ) n
), links AS (
    SELECT cid, array_agg(nid) AS neighbours FROM nb GROUP BY cid
), picked AS (
    SELECT id FROM cand UNION SELECT nid FROM nb
)
SELECT m.id, m.project, m.category, m.content, m.importance, m.status, m.occurred_at,
       coalesce(1 - (coalesce(m.embedding, pend.embedding) <=> $1), 0) AS cosine,
       coalesce((
           SELECT sum({_bm25("t.tf", "length(m.search_text)")})
           FROM (SELECT lexeme, coalesce(cardinality(positions), 1) AS tf
                 FROM unnest(m.search_text)) t
           JOIN ql ON ql.lex = t.lexeme), 0) AS bm25,
       links.neighbours,
       (SELECT count(*) FROM vec) AS vector_found
FROM picked JOIN memories m ON m.id = picked.id
LEFT JOIN pend ON pend.id = m.id
LEFT JOIN links ON links.cid = m.id
"""
# "+ 0" keeps the planner off the HNSW index: an exact scan of the scope, complete by design.
_HYBRID_SEARCH_EXACT = _HYBRID_SEARCH.replace(
    "ORDER BY m.embedding <=> $1", "ORDER BY (m.embedding <=> $1) + 0"
)


async def hybrid_search(
    conn: asyncpg.Connection, query_vector: np.ndarray, filters: SearchFilters,
    query: HybridQuery, pending: PendingVectors,
) -> list[asyncpg.Record]:
    """Keyword candidates, vector candidates and pending memories, plus the ``neighbours``
    memories on each side of each in insertion order, in one statement (after
    ``search_terms`` in the same transaction). Fusion is the caller's."""
    rows: list[asyncpg.Record] = await conn.fetch(
        _HYBRID_SEARCH_EXACT if query.exact else _HYBRID_SEARCH,
        query_vector, *filters.params(), query.keyword_lexemes, query.lexemes, query.idf,
        query.avg_length, query.keyword_candidates, pending.ids,
        [_vector_text(v) for v in pending.vectors], query.k1, query.b, query.neighbours,
        query.vector_candidates,
    )
    return rows


async def set_ef_search(conn: asyncpg.Connection, ef_search: int) -> None:
    """HNSW candidate list size for the rest of the transaction."""
    await conn.execute(f"SET LOCAL hnsw.ef_search = {max(1, min(1000, int(ef_search)))}")


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


# --- capture from Claude Code hooks -------------------------------------------------------


# A capture session is one key's session: (tenant, key_id, session_id); see sql/009.


async def ensure_capture_session(
    conn: asyncpg.Connection, tenant_id: UUID, key_id: UUID, session_id: str, project: str
) -> None:
    await conn.execute(
        "INSERT INTO capture_sessions (tenant_id, key_id, session_id, project)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, key_id, session_id) DO NOTHING",
        tenant_id, key_id, session_id, project,
    )


async def count_capture_received(
    conn: asyncpg.Connection, tenant_id: UUID, key_id: UUID, session_id: str, project: str,
    received: int, skipped: int, skip_reason: str | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO capture_sessions (tenant_id, key_id, session_id, project, events_received,
                                      events_skipped, last_skip_reason)
        VALUES ($1, $7, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id, key_id, session_id) DO UPDATE SET
            events_received = capture_sessions.events_received + EXCLUDED.events_received,
            events_skipped = capture_sessions.events_skipped + EXCLUDED.events_skipped,
            last_skip_reason = coalesce(EXCLUDED.last_skip_reason,
                                        capture_sessions.last_skip_reason),
            updated_at = now()
        """,
        tenant_id, session_id, project, received, skipped, skip_reason, key_id,
    )


async def processed_event_keys(
    conn: asyncpg.Connection, key_id: UUID, session_id: str, keys: list[str]
) -> set[str]:
    rows = await conn.fetch(
        "SELECT event_key FROM capture_events WHERE session_id = $1"
        " AND event_key = ANY($2::text[]) AND key_id = $3",
        session_id, keys, key_id,
    )
    return {row["event_key"] for row in rows}


async def capture_tokens_used(
    conn: asyncpg.Connection, key_id: UUID, session_id: str, day: date
) -> tuple[int, int]:
    """(tokens this session has used, tokens the tenant has used on ``day``) for distillation."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM capture_sessions
                WHERE session_id = $1 AND key_id = $3) AS session,
               (SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM capture_usage_daily
                WHERE day = $2) AS daily
        """,
        session_id, day, key_id,
    )
    assert row is not None
    return int(row["session"]), int(row["daily"])


async def record_capture_outcome(
    conn: asyncpg.Connection, *, tenant_id: UUID, key_id: UUID, session_id: str,
    keys: list[str], outcome: str, skip_reason: str | None = None,
) -> None:
    """Mark events distilled or skipped (once each) and count them on the session."""
    inserted = await conn.fetchval(
        """
        WITH new AS (
            INSERT INTO capture_events (tenant_id, key_id, session_id, event_key, outcome)
            SELECT $1, $5, $2, k, $4 FROM unnest($3::text[]) AS k
            ON CONFLICT DO NOTHING RETURNING 1
        ) SELECT count(*) FROM new
        """,
        tenant_id, session_id, keys, outcome, key_id,
    )
    column = "events_distilled" if outcome == "distilled" else "events_skipped"
    await conn.execute(
        f"UPDATE capture_sessions SET {column} = {column} + $2,"
        " last_skip_reason = coalesce($3, last_skip_reason), updated_at = now()"
        " WHERE session_id = $1 AND key_id = $4",
        session_id, inserted, skip_reason, key_id,
    )


async def add_capture_usage(
    conn: asyncpg.Connection, *, tenant_id: UUID, key_id: UUID, session_id: str, day: date,
    input_tokens: int, output_tokens: int, observations: int,
) -> None:
    await conn.execute(
        "UPDATE capture_sessions SET input_tokens = input_tokens + $2,"
        " output_tokens = output_tokens + $3, observations = observations + $4,"
        " updated_at = now() WHERE session_id = $1 AND key_id = $5",
        session_id, input_tokens, output_tokens, observations, key_id,
    )
    await conn.execute(
        """
        INSERT INTO capture_usage_daily (tenant_id, day, calls, input_tokens, output_tokens)
        VALUES ($1, $2, 1, $3, $4)
        ON CONFLICT (tenant_id, day) DO UPDATE SET
            calls = capture_usage_daily.calls + 1,
            input_tokens = capture_usage_daily.input_tokens + EXCLUDED.input_tokens,
            output_tokens = capture_usage_daily.output_tokens + EXCLUDED.output_tokens
        """,
        tenant_id, day, input_tokens, output_tokens,
    )


async def capture_session(
    conn: asyncpg.Connection, key_id: UUID, session_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT session_id, project, events_received, events_distilled, events_skipped,"
        " observations, input_tokens, output_tokens, last_skip_reason"
        " FROM capture_sessions WHERE session_id = $1 AND key_id = $2",
        session_id, key_id,
    )


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
    key_hash: str, project: str | None, read_only: bool, expires_at: datetime | None,
) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, project, read_only,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        key_id, tenant_id, name, prefix, key_hash, project, read_only, expires_at,
    )


async def list_keys(conn: asyncpg.Connection, tenant_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, name, prefix, project, read_only, created_at, revoked_at, expires_at,"
        " expires_at <= now() AS expired FROM api_keys WHERE tenant_id = $1"
        " ORDER BY created_at",
        tenant_id,
    )
    return rows


async def key_tenant(conn: asyncpg.Connection, key_id: UUID) -> UUID | None:
    tenant_id: UUID | None = await conn.fetchval(
        "SELECT tenant_id FROM api_keys WHERE id = $1", key_id
    )
    return tenant_id


async def revoke_key(conn: asyncpg.Connection, key_id: UUID) -> bool:
    done = await conn.fetchval(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
        " RETURNING id",
        key_id,
    )
    return done is not None


# --- audit trail --------------------------------------------------------------------------


async def insert_audit(
    conn: asyncpg.Connection, *, tenant_id: UUID, key_id: UUID | None, actor: str, action: str,
    outcome: str, target: str | None = None, detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (tenant_id, key_id, actor, action, target, outcome, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        tenant_id, key_id, actor, action, target, outcome, _json(_redacted(detail or {})),
    )


def _redacted(value: Any) -> Any:
    """The audit trail is append-only and outlives purges: every text in a detail goes
    through redaction, whoever wrote it."""
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
    await conn.execute("SELECT audit_auth_failure($1, $2, $3)", key_hash, prefix, transport)


_AUDIT_COLUMNS = "id, tenant_id, key_id, actor, action, target, outcome, detail, created_at"


async def audit_entries(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The newest entries Row-Level Security shows: the current tenant's."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY id DESC LIMIT $1", limit
    )
    return rows


async def unscoped_audit_entries(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Failed authentications with unknown keys (schema owner only)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE tenant_id IS NULL"
        " ORDER BY id DESC LIMIT $1",
        limit,
    )
    return rows


# --- restore and purge --------------------------------------------------------------------


async def restore(conn: asyncpg.Connection, memory_id: UUID) -> asyncpg.Record | None:
    """Undo a soft forget; the status follows from what the memory was linked to."""
    return await conn.fetchrow(
        """
        UPDATE memories SET
            status = CASE WHEN duplicate_of IS NOT NULL THEN 'duplicate'
                          WHEN superseded_by IS NOT NULL THEN 'superseded'
                          WHEN embedding IS NULL THEN 'pending'
                          ELSE 'active' END,
            valid_to = CASE WHEN duplicate_of IS NULL AND superseded_by IS NULL THEN NULL
                            ELSE valid_to END,
            updated_at = now()
        WHERE id = $1 AND status = 'forgotten' AND purged_at IS NULL
        RETURNING id, status
        """,
        memory_id,
    )


async def purge_family(conn: asyncpg.Connection, memory_id: UUID) -> list[asyncpg.Record]:
    """Lock a memory and the memories folded into it (same text), for purging."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, project, content_hash, generation, duplicate_of, purged_at, source,"
        " created_by FROM memories"
        " WHERE id = $1 OR duplicate_of = $1 ORDER BY id = $1 DESC FOR UPDATE",
        memory_id,
    )
    return rows


async def erase_memories(conn: asyncpg.Connection, ids: list[UUID]) -> None:
    """Erase the text of memories (content, generated search text, tags, source, vector)."""
    await conn.execute(
        """
        UPDATE memories SET content = '', tags = '{}', source = NULL, embedding = NULL,
               status = 'forgotten', valid_to = coalesce(valid_to, now()),
               purged_at = coalesce(purged_at, now()), updated_at = now()
        WHERE id = ANY($1::uuid[])
        """,
        ids,
    )


async def erase_event_text(conn: asyncpg.Connection, ids: list[UUID]) -> int:
    erased: int = await conn.fetchval("SELECT purge_event_text($1::uuid[])", ids)
    return erased


# --- Temporal payload keys (team_memory/temporal_keys.py) --------------------------------------


async def newest_tenant_key(conn: asyncpg.Connection) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, kek_id, wrapped FROM temporal_tenant_keys"
        " ORDER BY created_at DESC, id LIMIT 1")


async def tenant_key(conn: asyncpg.Connection, key_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, kek_id, wrapped FROM temporal_tenant_keys WHERE id = $1", key_id)


async def lock_tenant_keyring(conn: asyncpg.Connection, tenant_id: UUID) -> None:
    """Serialize key creation and rotation of one tenant (until the transaction ends)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 13))",
                       f"temporal-keys/{tenant_id}")


async def insert_tenant_key(
    conn: asyncpg.Connection, *, key_id: UUID, tenant_id: UUID, kek_id: str, wrapped: bytes
) -> None:
    await conn.execute(
        "INSERT INTO temporal_tenant_keys (id, tenant_id, kek_id, wrapped)"
        " VALUES ($1, $2, $3, $4)",
        key_id, tenant_id, kek_id, wrapped)


async def tenant_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The tenant's keyring, newest first, with how many workflow keys each one wraps."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT k.id, k.kek_id, k.wrapped, k.created_at,
               (SELECT count(*) FROM temporal_workflow_keys w WHERE w.wrapped_by = k.id)
                   AS workflow_keys
        FROM temporal_tenant_keys k ORDER BY k.created_at DESC, k.id
        """)
    return rows


async def rewrap_tenant_key(
    conn: asyncpg.Connection, key_id: UUID, kek_id: str, wrapped: bytes
) -> None:
    await conn.execute(
        "UPDATE temporal_tenant_keys SET kek_id = $2, wrapped = $3 WHERE id = $1",
        key_id, kek_id, wrapped)


async def delete_tenant_key(conn: asyncpg.Connection, key_id: UUID) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM temporal_tenant_keys WHERE id = $1 RETURNING id", key_id)
    return deleted is not None


_WORKFLOW_KEY_COLUMNS = "id, workflow_id, wrapped_by, wrapped"


async def workflow_key(conn: asyncpg.Connection, key_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_WORKFLOW_KEY_COLUMNS} FROM temporal_workflow_keys WHERE id = $1", key_id)


async def workflow_key_for(conn: asyncpg.Connection, workflow_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_WORKFLOW_KEY_COLUMNS} FROM temporal_workflow_keys WHERE workflow_id = $1",
        workflow_id)


async def commit_without_waiting_for_disk(conn: asyncpg.Connection) -> None:
    """This transaction's commit returns before its log reaches the disk (visible at once;
    durable once any later synchronous commit has flushed the log past it)."""
    await conn.execute("SET LOCAL synchronous_commit TO off")


async def insert_workflow_key(
    conn: asyncpg.Connection, *, key_id: UUID, tenant_id: UUID, workflow_id: str,
    wrapped_by: UUID, wrapped: bytes,
) -> bool:
    """False when the workflow has a key already."""
    created = await conn.fetchval(
        """
        INSERT INTO temporal_workflow_keys (id, tenant_id, workflow_id, wrapped_by, wrapped)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (tenant_id, workflow_id) DO NOTHING
        RETURNING id
        """,
        key_id, tenant_id, workflow_id, wrapped_by, wrapped)
    return created is not None


async def workflow_keys_not_wrapped_by(
    conn: asyncpg.Connection, wrapping_key: UUID, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_WORKFLOW_KEY_COLUMNS} FROM temporal_workflow_keys WHERE wrapped_by <> $1"
        " ORDER BY id LIMIT $2 FOR UPDATE",
        wrapping_key, limit)
    return rows


async def rewrap_workflow_key(
    conn: asyncpg.Connection, key_id: UUID, wrapped_by: UUID, wrapped: bytes
) -> None:
    await conn.execute(
        "UPDATE temporal_workflow_keys SET wrapped_by = $2, wrapped = $3 WHERE id = $1",
        key_id, wrapped_by, wrapped)


async def delete_workflow_keys(conn: asyncpg.Connection, workflow_ids: list[str]) -> list[str]:
    """Crypto-shredding: the workflows' histories cannot be decrypted any more."""
    rows = await conn.fetch(
        "DELETE FROM temporal_workflow_keys WHERE workflow_id = ANY($1::text[])"
        " RETURNING workflow_id",
        workflow_ids)
    return sorted(row["workflow_id"] for row in rows)



async def erase_proposal_text(conn: asyncpg.Connection, ids: list[UUID]) -> None:
    """The text of review proposals that would change, or came from, erased memories."""
    await conn.execute(
        "UPDATE memory_proposals SET proposed_text = NULL, reason = NULL"
        " WHERE target_id = ANY($1::uuid[]) OR source_ids && $1::uuid[]",
        ids,
    )


# --- merge review (team_memory/review.py) ---------------------------------------------------


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


async def proposals(
    conn: asyncpg.Connection, status: str | None, limit: int
) -> list[asyncpg.Record]:
    """The newest review proposals Row-Level Security shows (all statuses when None)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, project, kind, target_id, source_ids, proposed_text, reason, origin,"
        " key_id, run_id, policy, model, status, created_at FROM memory_proposals"
        " WHERE $1::text IS NULL OR status = $1 ORDER BY id DESC LIMIT $2",
        status, limit,
    )
    return rows


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


# --- consolidation ----------------------------------------------------------------------------
# The nightly run (workflows/consolidate.py) and the schedule per project. A memory counts as
# reviewed when the run looked at it after its last change and it is not flagged for review.

_REVIEWED = "(m.consolidated_at IS NOT NULL AND m.consolidated_at >= m.updated_at" \
    " AND NOT m.needs_review)"


async def register_project(conn: asyncpg.Connection, tenant_id: UUID, project: str) -> bool:
    """Record that the project holds memories; True while its schedule is not created yet."""
    await conn.execute(
        "INSERT INTO memory_projects (tenant_id, project) VALUES ($1, $2)"
        " ON CONFLICT (tenant_id, project) DO NOTHING",
        tenant_id, project,
    )
    missing = await conn.fetchval(
        "SELECT schedule_ensured_at IS NULL FROM memory_projects"
        " WHERE tenant_id = $1 AND project = $2",
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


async def consolidation_scopes(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every (tenant, project) with memories, across tenants (SECURITY DEFINER function)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT tenant_id, tenant_name, project FROM consolidation_scopes()"
    )
    return rows


async def tenant_id_named(conn: asyncpg.Connection, name: str) -> UUID | None:
    found: UUID | None = await conn.fetchval("SELECT tenant_id_named($1)", name)
    return found


async def tenant_name(conn: asyncpg.Connection, tenant_id: UUID) -> str | None:
    name: str | None = await conn.fetchval("SELECT name FROM tenants WHERE id = $1", tenant_id)
    return name


async def mark_needs_review(conn: asyncpg.Connection, memory_id: UUID) -> None:
    await conn.execute("UPDATE memories SET needs_review = true WHERE id = $1", memory_id)


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
        run_id, input_tokens, output_tokens, _json(report),
    )


async def recent_runs(conn: asyncpg.Connection, project: str, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, workflow_id, policy, model, token_budget, input_tokens, output_tokens,"
        " status, report, started_at, finished_at FROM consolidation_runs"
        " WHERE project = $1 ORDER BY started_at DESC LIMIT $2",
        project, limit,
    )
    return rows


async def neighbourhoods(
    conn: asyncpg.Connection, project: str, cursor: UUID | None, page_size: int,
    neighbours: int, min_similarity: float,
) -> list[asyncpg.Record]:
    """One page of active memories (keyset by id), each with its nearest active neighbours.

    A seed flagged for review gets its neighbours whatever their similarity. Exact scan, as in
    ``similar_current``: a filtered HNSW scan can miss the one neighbour that matters.
    """
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        WITH seeds AS (
            SELECT m.id, m.embedding, m.needs_review, {_REVIEWED} AS reviewed
            FROM memories m
            WHERE m.project = $1 AND m.status = 'active' AND m.embedding IS NOT NULL
              AND ($2::uuid IS NULL OR m.id > $2)
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
              AND m.embedding IS NOT NULL
            ORDER BY (m.embedding <=> s.embedding) + 0
            LIMIT $4
        ) n ON n.similarity >= $5 OR s.needs_review
        ORDER BY s.id, n.similarity DESC
        """,
        project, cursor, page_size, neighbours, min_similarity,
    )
    return rows


async def lock_cluster(conn: asyncpg.Connection, ids: list[UUID]) -> list[asyncpg.Record]:
    """The cluster's memories, locked for the review's transaction, oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT m.id, m.content, m.category, m.importance, m.occurred_at, m.status,
               m.content_hash, m.embedding, m.needs_review, m.created_by,
               {_REVIEWED} AS reviewed
        FROM memories m WHERE m.id = ANY($1::uuid[])
        ORDER BY m.occurred_at, m.id
        FOR UPDATE
        """,
        ids,
    )
    return rows


async def retire_duplicate(conn: asyncpg.Connection, memory_id: UUID, target_id: UUID) -> bool:
    """A live memory found to repeat ``target_id`` (kept as history, pointing at it)."""
    done = await conn.fetchval(
        "UPDATE memories SET status = 'duplicate', duplicate_of = $2, valid_to = now(),"
        " updated_at = now() WHERE id = $1 AND status = 'active' RETURNING id",
        memory_id, target_id,
    )
    return done is not None


async def fold_into(
    conn: asyncpg.Connection, keep_id: UUID, others: list[UUID], content: str,
    embedding: np.ndarray,
) -> None:
    """``keep_id`` takes the merged text and the others' ids as provenance."""
    await conn.execute(
        """
        UPDATE memories SET content = $2, embedding = $4,
               merged_from = merged_from || $3::uuid[], updated_at = now()
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


async def top_memories(
    conn: asyncpg.Connection, project: str, half_life_days: float, limit: int
) -> list[asyncpg.Record]:
    """The project's active memories ranked by importance x recency (the manifesto's input)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT id, category, content, importance,
               importance * power(0.5, extract(epoch FROM now() - occurred_at)
                                       / ($2 * 86400.0)) AS weight
        FROM memories
        WHERE project = $1 AND status = 'active'
        ORDER BY weight DESC, id
        LIMIT $3
        """,
        project, half_life_days, limit,
    )
    return rows


async def lock_against_purge(conn: asyncpg.Connection, ids: list[UUID]) -> bool:
    """Share-lock these memories until the transaction ends (a purge waits, or is waited
    for); True when one of them is purged already."""
    purged = await conn.fetchval(
        "SELECT count(*) FROM (SELECT purged_at FROM memories WHERE id = ANY($1::uuid[])"
        " ORDER BY id FOR SHARE) m WHERE purged_at IS NOT NULL",
        ids,
    )
    return bool(purged)


async def manifesto(conn: asyncpg.Connection, project: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT project, rules, fingerprint, policy, model, generated_at FROM manifestos"
        " WHERE project = $1",
        project,
    )


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
        tenant_id, project, _json_rules(rules), fingerprint, policy, model,
        input_tokens, output_tokens,
    )


def _json_rules(rules: list[ManifestoRule]) -> str:
    import json

    return json.dumps([rule.model_dump(mode="json") for rule in rules])

# --- operations (`team-memory status`, run as the schema owner) ----------------------------


async def list_tenants(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch("SELECT id, name FROM tenants ORDER BY name")
    return rows


async def count_by_status(conn: asyncpg.Connection) -> dict[str, int]:
    """Memories of the transaction's tenant per status. The explicit tenant filter matters
    when the caller is a superuser (the embedded cluster's admin), whom RLS does not bind."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM memories"
                            " WHERE tenant_id = current_tenant() GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}
