"""Hybrid retrieval: BM25 keyword candidates + vector candidates + insertion-order neighbours
in one statement (``queries.hybrid_search``), fused in ``team_memory.ranking``.
Design and measurements: docs/retrieval.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from team_memory import queries, ranking
from team_memory.settings import Settings


@dataclass
class _ScopeSize:
    stats: queries.ScopeStats
    fetched: float


@dataclass
class Retriever:
    """One per process: remembers each scope's size for ``search_stats_ttl_s`` (it only
    chooses the vector scan; BM25 statistics are read fresh by every search)."""

    settings: Settings
    _sizes: dict[tuple[UUID, tuple[str, ...]], _ScopeSize] = field(default_factory=dict)

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
        rows = await self.candidates(conn, tenant_id, vector, filters, pending,
                                     self.hybrid_query(query))
        return ranking.fuse(rows, self.weights(), now)

    def hybrid_query(self, text: str, *, keyword_only: bool = False) -> queries.HybridQuery:
        """The statement's knobs from the settings; ``keyword_only``: every memory sharing a
        word with the query, no vector or neighbour candidates (the BM25 baseline)."""
        s = self.settings
        return queries.HybridQuery(
            text=text,
            keyword_rows=2**62 if keyword_only else s.keyword_candidate_rows,
            keyword_candidates=2**62 if keyword_only else s.search_candidates,
            vector_candidates=0 if keyword_only else s.search_candidates,
            exact=True, neighbours=0 if keyword_only else s.neighbour_count,
            k1=ranking.BM25_K1, b=ranking.BM25_B,
        )

    async def candidates(
        self, conn: asyncpg.Connection, tenant_id: UUID, vector: np.ndarray,
        filters: queries.SearchFilters, pending: queries.PendingVectors,
        query: queries.HybridQuery,
    ) -> list[asyncpg.Record]:
        """The hybrid statement's rows, with a complete vector side.

        Small scopes get an exact vector scan. Larger ones use HNSW with ef_search scaled by
        how much of the table the scope is (the filters keep about that share of what the
        index returns); pgvector 0.6 has no iterative scans, so a pass that comes back short
        is repeated with the exact scan.
        """
        stats = await self.scope_stats(conn, tenant_id, filters.projects)
        if stats.rows <= self.settings.exact_search_max_rows or query.vector_candidates == 0:
            return await queries.hybrid_search(conn, vector, filters, query, pending)
        share = stats.rows / max(stats.table_rows, stats.rows, 1)
        await queries.set_ef_search(conn, int(2 * query.vector_candidates / share))
        rows = await queries.hybrid_search(conn, vector, filters, replace(query, exact=False),
                                           pending)
        found = int(rows[0]["vector_found"]) if rows else 0
        if found < query.vector_candidates:
            rows = await queries.hybrid_search(conn, vector, filters, query, pending)
        return rows

    async def scope_stats(self, conn: asyncpg.Connection, tenant_id: UUID,
                          projects: list[str]) -> queries.ScopeStats:
        key = (tenant_id, tuple(sorted(projects)))
        cached = self._sizes.get(key)
        if cached is None or time.monotonic() - cached.fetched > self.settings.search_stats_ttl_s:
            cached = _ScopeSize(await queries.scope_stats(conn, projects), time.monotonic())
            self._sizes[key] = cached
        return cached.stats
