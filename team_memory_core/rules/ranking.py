"""Fusion of the keyword and vector evidence, neighbour context and boosts (docs/retrieval.md).

PostgreSQL returns the candidates with their raw scores (``store.search.hybrid_search``);
this module turns them into one ranking. Pure functions: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from team_memory_core.models.anchors import Freshness
from team_memory_core.models.memories import ScoreParts
from team_memory_core.rules.freshness import RANK_FACTOR
from team_memory_core.store.search import Candidate

# BM25 term-frequency saturation and length normalisation: short memories, so a light b.
BM25_K1 = 0.9
BM25_B = 0.3


@dataclass(frozen=True)
class RankWeights:
    dense_weight: float = 2.0
    neighbour_weight: float = 0.5
    neighbour_window: timedelta = timedelta(minutes=30)
    importance_boost: float = 0.1
    recency_weight: float = 0.2
    half_life_days: float = 90.0


def idf(rows: int, df: int) -> float:
    """BM25 inverse document frequency (always positive)."""
    rows = max(rows, df)
    return math.log(1 + (rows - df + 0.5) / (df + 0.5))


def boost(importance: int, age_days: float, weights: RankWeights) -> float:
    """Importance x recency multiplier, with the documented half-life."""
    decay: float = 0.5 ** (max(age_days, 0.0) / weights.half_life_days)
    return (1 + weights.importance_boost * (importance - 1)) * (
        1 - weights.recency_weight + weights.recency_weight * decay
    )


def freshness_factor(freshness: str | None) -> float:
    """Below 1 for a memory whose files moved on since it was saved (rules/freshness.py)."""
    return 1.0 if freshness is None else RANK_FACTOR.get(Freshness(freshness), 1.0)


def fuse(rows: Sequence[Candidate], weights: RankWeights,
         now: datetime) -> list[tuple[Candidate, ScoreParts]]:
    """Candidates (id, cosine, bm25, occurred_at, importance, neighbours) ranked best first,
    each with its score's parts (``ScoreParts.total`` is the score).

    relevance = bm25 / max(bm25) + dense_weight * cosine, plus neighbour_weight times the best
    relevance among its insertion-order neighbours that occurred within the window; then the
    importance, recency and freshness multipliers.
    """
    if not rows:
        return []
    top_bm25 = max(r.bm25 for r in rows) or 1.0
    ids = [r.id for r in rows]
    base = {i: r.bm25 / top_bm25 + weights.dense_weight * r.cosine
            for i, r in zip(ids, rows, strict=True)}
    when = {i: r.occurred_at.timestamp() for i, r in zip(ids, rows, strict=True)}
    window = weights.neighbour_window.total_seconds()
    links = _links(rows)
    now_s = now.timestamp()
    ranked = []
    for memory_id, row in zip(ids, rows, strict=True):
        at = when[memory_id]
        context = [base[n] for n in links.get(memory_id, ()) if abs(when[n] - at) <= window]
        parts = score_parts(row.bm25 / top_bm25, weights.dense_weight * row.cosine,
                            weights.neighbour_weight * max(context, default=0.0),
                            _factors(row, (now_s - at) / 86400, weights))
        ranked.append((row, parts, at))
    ranked.sort(key=lambda scored: (-scored[1].total, -scored[2]))
    return [(row, parts) for row, parts, _ in ranked]


def _factors(row: Candidate, age_days: float,
             weights: RankWeights) -> tuple[float, float, float]:
    """The importance, recency and freshness multipliers (their product is ``boost`` x the
    freshness factor)."""
    decay: float = 0.5 ** (max(age_days, 0.0) / weights.half_life_days)
    return (1 + weights.importance_boost * (row.importance - 1),
            1 - weights.recency_weight + weights.recency_weight * decay,
            freshness_factor(row.freshness))


def score_parts(keyword: float, vector: float, neighbour: float,
                factors: tuple[float, float, float]) -> ScoreParts:
    """relevance x importance x recency x freshness, as parts that add up to it: each factor
    is what it adds to the score so far."""
    importance, recency, freshness = factors
    relevance = keyword + vector + neighbour
    weighted = relevance * importance
    aged = weighted * recency
    return ScoreParts(keyword=keyword, vector=vector, neighbour=neighbour,
                      importance=weighted - relevance, recency=aged - weighted,
                      freshness=aged * freshness - aged)


def _links(rows: Sequence[Candidate]) -> dict[UUID, set[UUID]]:
    """Neighbour links among the returned rows, both ways (adjacency is symmetric)."""
    present = {r.id for r in rows}
    links: dict[UUID, set[UUID]] = {}
    for row in rows:
        for other in row.neighbours or ():
            if other in present and other != row.id:
                links.setdefault(row.id, set()).add(other)
                links.setdefault(other, set()).add(row.id)
    return links
