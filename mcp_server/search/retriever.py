"""Hybrid retrieval: BM25 keyword candidates + vector candidates + insertion-order neighbours
in one statement (``store.search.hybrid_search``), fused in ``team_memory_core.rules.ranking``.
Design and measurements: docs/retrieval.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import asyncpg
import numpy as np

from team_memory_core.rules import ranking
from team_memory_core.settings import Settings
from team_memory_core.store import search
from team_memory_core.store.search import Candidate, PendingVectors, SearchFilters, Term

_UNLIMITED = 2**62  # a SQL LIMIT that never binds


@dataclass(frozen=True)
class Retriever:
    settings: Settings

    def weights(self) -> ranking.RankWeights:
        s = self.settings
        return ranking.RankWeights(
            dense_weight=s.dense_weight, neighbour_weight=s.neighbour_weight,
            neighbour_window=timedelta(minutes=s.neighbour_minutes),
            importance_boost=s.importance_boost, recency_weight=s.recency_weight,
            half_life_days=s.recency_half_life_days,
        )

    async def rank(
        self, conn: asyncpg.Connection, vector: np.ndarray, filters: SearchFilters,
        hybrid: search.HybridQuery, pending: PendingVectors, now: datetime,
    ) -> list[tuple[Candidate, ranking.Score]]:
        """Every candidate of the filtered scope with its final score (in parts), best first
        (``hybrid`` from ``plan`` in the same transaction)."""
        rows = await self.retrieve(conn, vector, filters, hybrid, pending)
        return ranking.fuse(rows, self.weights(), now)

    async def candidates(
        self, conn: asyncpg.Connection, query: str, vector: np.ndarray,
        filters: SearchFilters, pending: PendingVectors, *,
        limit: int | None = None, keyword_only: bool = False,
    ) -> list[Candidate]:
        """The hybrid statement's rows, with a complete vector side. ``keyword_only``: every
        memory sharing a word with the query, and nothing else (the BM25 baseline)."""
        hybrid = await self.plan(conn, query, filters, limit=limit, keyword_only=keyword_only)
        return await self.retrieve(conn, vector, filters, hybrid, pending)

    async def plan(
        self, conn: asyncpg.Connection, query: str, filters: SearchFilters, *,
        limit: int | None = None, keyword_only: bool = False,
    ) -> search.HybridQuery:
        """The hybrid statement's words, statistics and sizes (one statement, which also sets
        up the rest of the transaction). It needs no vector: a search runs it while its
        query is being embedded."""
        terms = await search.search_terms(conn, query, filters.projects,
                                          self.per_side(limit, keyword_only))
        return self.hybrid_query(terms, limit=limit, keyword_only=keyword_only)

    def per_side(self, limit: int | None, keyword_only: bool = False) -> int:
        """Vector candidates of a search returning ``limit`` results (``_per_side``)."""
        return 0 if keyword_only else _per_side(self.settings.search_candidates, limit)

    def hybrid_query(self, terms: search.SearchTerms, *, limit: int | None = None,
                     keyword_only: bool = False) -> search.HybridQuery:
        """The hybrid statement for the query's ``terms`` (read with ``per_side(limit)``).
        Small scopes get an exact vector scan, larger ones HNSW."""
        s = self.settings
        per_side = self.per_side(limit, keyword_only)
        return search.HybridQuery(
            lexemes=[t.lexeme for t in terms.terms],
            idf=[ranking.idf(terms.docs, t.docs) for t in terms.terms],
            keyword_lexemes=_selecting(terms.terms, None if keyword_only
                                       else s.keyword_candidate_rows),
            avg_length=terms.avg_length,
            keyword_candidates=_UNLIMITED if keyword_only else per_side,
            vector_candidates=per_side,
            exact=terms.docs <= s.exact_search_max_rows or keyword_only,
            neighbours=0 if keyword_only else s.neighbour_count,
            k1=ranking.BM25_K1, b=ranking.BM25_B,
        )

    @staticmethod
    async def retrieve(conn: asyncpg.Connection, vector: np.ndarray, filters: SearchFilters,
                    hybrid: search.HybridQuery, pending: PendingVectors) -> list[Candidate]:
        """The hybrid statement's rows, with a complete vector side: pgvector 0.6 has no
        iterative scans, so an HNSW pass that comes back short is repeated exactly."""
        rows = await search.hybrid_search(conn, vector, filters, hybrid, pending)
        if not hybrid.exact and (rows[0].vector_found if rows else 0) < hybrid.vector_candidates:
            rows = await search.hybrid_search(conn, vector, filters,
                                              replace(hybrid, exact=True), pending)
        return rows


def _per_side(most: int, limit: int | None) -> int:
    """Candidates from each of the keyword and vector sides: four per result asked for, at
    least 20, at most ``most``. On LoCoMo, limit 5 with 20 a side found exactly what 50 a side
    found, at two thirds of the latency (docs/retrieval.md)."""
    return most if limit is None else min(most, max(20, 4 * limit))


def _selecting(terms: list[Term], budget: int | None) -> list[str]:
    """The rarest words whose memories add up to at most ``budget`` (all words without
    one). A word in no active memory yet costs nothing and still selects: a pending
    memory is found by its rare words before its workflow commits it."""
    chosen, used = [], 0
    for term in sorted(terms, key=lambda t: (t.docs, t.lexeme)):
        if budget is not None and used + term.docs > budget:
            break
        chosen.append(term.lexeme)
        used += term.docs
    return chosen
