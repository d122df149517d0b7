"""Hybrid retrieval: BM25 keyword candidates + vector candidates + insertion-order neighbours,
fused in ``team_memory.ranking``. Design and measurements: docs/retrieval.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from team_memory import queries, ranking
from team_memory.models import CURRENT_STATUSES
from team_memory.settings import Settings

_CURRENT = [s.value for s in CURRENT_STATUSES]


@dataclass
class _ScopeCache:
    stats: queries.ScopeStats
    common: dict[str, int]
    fetched: float


@dataclass
class Retriever:
    """One per process: keeps each scope's BM25 statistics for ``search_stats_ttl_s``."""

    settings: Settings
    _cache: dict[tuple[UUID, tuple[str, ...]], _ScopeCache] = field(default_factory=dict)

    def weights(self) -> ranking.RankWeights:
        s = self.settings
        return ranking.RankWeights(
            dense_weight=s.dense_weight, neighbour_weight=s.neighbour_weight,
            neighbour_window=timedelta(minutes=s.neighbour_minutes),
            importance_boost=s.importance_boost, recency_weight=s.recency_weight,
            half_life_days=s.recency_half_life_days,
        )

    async def rank(
        self, conn: asyncpg.Connection, tenant_id: UUID, query: str, vector: np.ndarray,
        filters: queries.SearchFilters, pending: queries.PendingVectors, now: datetime,
    ) -> list[tuple[Mapping[str, Any], float]]:
        """Every candidate of the filtered scope with its final score, best first."""
        scope = await self._scope(conn, tenant_id, filters.projects)
        lexical = await self._lexical(conn, scope, query, filters.projects)
        vector_ids = await self.nearest(conn, vector, filters, scope.stats,
                                        self.settings.search_candidates)
        rows = await queries.hybrid_candidates(
            conn, vector, filters, lexical, vector_ids, pending,
            candidates=self.settings.search_candidates, neighbours=self.settings.neighbour_count,
        )
        return ranking.fuse(rows, self.weights(), now)

    async def nearest(
        self, conn: asyncpg.Connection, vector: np.ndarray, filters: queries.SearchFilters,
        stats: queries.ScopeStats, limit: int,
    ) -> list[UUID]:
        """The ``limit`` nearest memories of the filtered scope, never fewer than exist.

        Small scopes get an exact scan. Otherwise HNSW with ef_search scaled by how much of
        the table the scope is (a filter keeps about that share of what the index returns);
        if it still returns too few, the exact scan.
        """
        if stats.rows <= self.settings.exact_search_max_rows:
            return await queries.vector_candidates(conn, vector, filters, limit, exact=True)
        share = stats.rows / max(stats.table_rows, stats.rows, 1)
        ef_search = int(2 * limit / share)
        found = await queries.vector_candidates(conn, vector, filters, limit, exact=False,
                                                ef_search=ef_search)
        if len(found) < limit:
            found = await queries.vector_candidates(conn, vector, filters, limit, exact=True)
        return found

    async def scope_stats(self, conn: asyncpg.Connection, tenant_id: UUID,
                          projects: list[str]) -> queries.ScopeStats:
        return (await self._scope(conn, tenant_id, projects)).stats

    async def lexical(self, conn: asyncpg.Connection, tenant_id: UUID, query: str,
                      projects: list[str]) -> queries.LexicalQuery:
        scope = await self._scope(conn, tenant_id, projects)
        return await self._lexical(conn, scope, query, projects)

    async def _scope(self, conn: asyncpg.Connection, tenant_id: UUID,
                     projects: list[str]) -> _ScopeCache:
        key = (tenant_id, tuple(sorted(projects)))
        cached = self._cache.get(key)
        if cached is None or time.monotonic() - cached.fetched > self.settings.search_stats_ttl_s:
            stats = await queries.scope_stats(conn, projects, _CURRENT)
            cached = _ScopeCache(stats, {}, time.monotonic())
            self._cache[key] = cached
        return cached

    async def _lexical(self, conn: asyncpg.Connection, scope: _ScopeCache, query: str,
                       projects: list[str]) -> queries.LexicalQuery:
        """Query lexemes with idf; common ones (in more than ``common_lexeme_rows`` memories)
        score but do not select candidates, and their exact frequency is counted once per
        cache period."""
        cap = self.settings.common_lexeme_rows
        counted = await queries.query_lexemes(conn, query, projects, _CURRENT,
                                              list(scope.common), cap)
        frequencies = {lexeme: df for lexeme, df in counted if df is not None and df <= cap}
        to_count = [lexeme for lexeme, df in counted if df is not None and df > cap]
        if to_count:
            scope.common.update(await queries.lexeme_frequencies(conn, to_count, projects,
                                                                 _CURRENT))
        for lexeme, _ in counted:
            frequencies.setdefault(lexeme, scope.common.get(lexeme, 0))
        scored = {lexeme: df for lexeme, df in frequencies.items() if df > 0}
        return queries.LexicalQuery(
            lexemes=list(scored),
            idf=[ranking.idf(scope.stats.rows, df) for df in scored.values()],
            candidate_lexemes=[lexeme for lexeme, df in scored.items() if df <= cap],
            avg_length=scope.stats.avg_length, k1=ranking.BM25_K1, b=ranking.BM25_B,
        )
