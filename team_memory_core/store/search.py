"""The read path's SQL: the hybrid search statement and what prepares it (the query's
terms and the scope's statistics), vector candidates, pending memories not embedded yet, and
the working set's importance x recency ranking. Design and measurements: docs/retrieval.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg
import numpy as np

from team_memory_core.models.memories import Category
from team_memory_core.models.principal import Principal
from team_memory_core.store.embeddings import ModelsInUse, models_in_use
from team_memory_core.store.memories import MEMORY_COLUMNS, MemoryRow, memory_row
from team_memory_core.store.pool import principal_tx
from team_memory_core.store.rows import tuples, vector_text


@dataclass(frozen=True)
class SearchFilters:
    projects: list[str]
    statuses: list[str]
    category: Category | None = None
    tags: list[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> tuple[object, ...]:
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
    (sql/006_search_stats.sql) by the SQL function of that name (sql/018_search_prelude.sql),
    which also prepares the rest of the transaction for ``hybrid_search``: HNSW ef_search
    scaled by the scope's share of the table, and custom plans."""
    rows = await conn.fetch("SELECT docs, lexemes, lexeme, df FROM search_terms($1, $2, $3)",
                            text, projects, vector_candidates)
    first = rows[0]
    return _search_terms(first["docs"], first["lexemes"],
                         [(r["lexeme"], r["df"]) for r in rows if r["lexeme"] is not None])


def _search_terms(docs: int, lexemes: int, terms: Iterable[tuple[str, int]]) -> SearchTerms:
    return SearchTerms(
        docs=docs, avg_length=max(lexemes / docs, 1.0) if docs else 1.0,
        terms=[Term(lexeme, int(df)) for lexeme, df in terms],
    )


@dataclass(frozen=True)
class SearchPrelude:
    """What a search reads before its hybrid statement (``search_prelude``)."""

    models: ModelsInUse
    pending: list[PendingText]  # newest first
    terms: SearchTerms


@asynccontextmanager
async def search_transaction(
    pool: asyncpg.Pool, principal: Principal, query: str, filters: SearchFilters,
    pending_limit: int, vector_candidates: int,
) -> AsyncIterator[tuple[asyncpg.Connection, SearchPrelude]]:
    """A search's transaction (``principal_tx``: the scope travels with the BEGIN), with
    what its first statement read (``search_prelude``)."""
    async with principal_tx(pool, principal) as conn:
        yield conn, await search_prelude(conn, query, filters, pending_limit,
                                         vector_candidates)


async def search_prelude(
    conn: asyncpg.Connection, query: str, filters: SearchFilters, pending_limit: int,
    vector_candidates: int,
) -> SearchPrelude:
    """The first statement of a search's transaction, in one round trip
    (sql/018_search_prelude.sql), under the transaction's Row-Level Security: the
    active embedding model after locking memories (``embeddings.active_model``), the newest
    ``pending_limit`` acknowledged memories the filters keep that have no vector yet
    (read-your-writes: the caller embeds their text for ``PendingVectors``) and the query's
    words (``search_terms``)."""
    row = await conn.fetchrow(
        "SELECT * FROM search_prelude($1, $2, $3, $4, $5, $6, $7, $8)",
        query, filters.projects,
        None if filters.category is None else filters.category.value,
        filters.tags or None, filters.since, filters.until, pending_limit, vector_candidates,
    )
    if row is None or row["name"] is None:
        raise RuntimeError("no active embedding model: run `team-memory migrate`")
    return SearchPrelude(
        models=models_in_use(row),
        pending=[PendingText(i, c) for i, c in zip(row["pending_ids"], row["pending_contents"],
                                                    strict=True)],
        terms=_search_terms(row["docs"], row["lexemes"],
                            zip(row["terms"], row["dfs"], strict=True)),
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
        await _set_ef_search(conn, ef_search)
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
       m.freshness, m.injection_flags,
       coalesce(1 - (coalesce(m.embedding, pend.embedding) <=> $1), 0) AS cosine,
       coalesce((
           SELECT sum({_bm25("t.tf", "length(m.search_text)")})
           FROM (SELECT lexeme, coalesce(cardinality(positions), 1) AS tf
                 FROM unnest(m.search_text)) t
           JOIN ql ON ql.lex = t.lexeme), 0) AS bm25,
       links.neighbours,
       (SELECT count(*) FROM vec) AS vector_found,
       (SELECT mb.name FROM members mb WHERE mb.id = m.author_id) AS author, m.origin,
       m.origin_session, m.private_to
FROM picked JOIN memories m ON m.id = picked.id
LEFT JOIN pend ON pend.id = m.id
LEFT JOIN links ON links.cid = m.id
"""
# "+ 0" keeps the planner off the HNSW index: an exact scan of the scope, complete by design.
_HYBRID_SEARCH_EXACT = _HYBRID_SEARCH.replace(
    "ORDER BY m.embedding <=> $1", "ORDER BY (m.embedding <=> $1) + 0"
)


class Candidate(NamedTuple):
    """A row of the hybrid statement, its columns in order: a memory with its raw evidence,
    for fusion. A named tuple, not a dataclass: a search reads some 200 of them, and a tuple
    is made from a record at C speed (a frozen dataclass took a tenth of the search's time).
    Category and status stay text until a candidate becomes a hit."""

    id: UUID
    project: str
    category: str
    content: str
    importance: int
    status: str
    occurred_at: datetime
    freshness: str | None  # of its files (None: it cites none)
    injection_flags: list[str]  # why it looks aimed at AI agents (empty: it does not)
    cosine: float
    bm25: float
    neighbours: list[UUID] | None  # insertion-order neighbours (candidates only)
    vector_found: int  # rows the vector side returned (an HNSW pass can come back short)
    author: str | None  # provenance: the member's name, how it came in, whose it is
    origin: str
    origin_session: str | None
    private_to: UUID | None


async def hybrid_search(
    conn: asyncpg.Connection, query_vector: np.ndarray, filters: SearchFilters,
    query: HybridQuery, pending: PendingVectors,
) -> list[Candidate]:
    """Keyword candidates, vector candidates and pending memories, plus the ``neighbours``
    memories on each side of each in insertion order, in one statement (after
    ``search_terms`` in the same transaction). Fusion is the caller's."""
    rows = await conn.fetch(
        _HYBRID_SEARCH_EXACT if query.exact else _HYBRID_SEARCH,
        query_vector, *filters.params(), query.keyword_lexemes, query.lexemes, query.idf,
        query.avg_length, query.keyword_candidates, pending.ids,
        [vector_text(v) for v in pending.vectors], query.k1, query.b, query.neighbours,
        query.vector_candidates,
    )
    return tuples(Candidate, rows)


async def _set_ef_search(conn: asyncpg.Connection, ef_search: int) -> None:
    """HNSW candidate list size for the rest of the transaction."""
    await conn.execute(f"SET LOCAL hnsw.ef_search = {max(1, min(1000, int(ef_search)))}")


@dataclass(frozen=True)
class PendingText:
    id: UUID
    content: str


async def important_recent(
    conn: asyncpg.Connection, filters: SearchFilters, importance_boost: float,
    recency_weight: float, half_life_days: float, limit: int,
) -> list[MemoryRow]:
    """Current memories ranked by importance x recency alone (a working set with no query),
    best first."""
    rows = await conn.fetch(
        f"""
        SELECT {MEMORY_COLUMNS},
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
    return [memory_row(row) for row in rows]

