"""Fusion of the keyword and vector evidence, neighbour context and boosts (docs/retrieval.md).

PostgreSQL returns the candidates with their raw scores (``store.search.hybrid_search``);
this module turns them into one ranking. Pure functions: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from team_memory_core.models.anchors import Freshness
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


class Score(NamedTuple):
    """A search score in parts that sum to it (``ScoreParts`` is its wire form, made only for
    the hits that show it: a search scores some 200 candidates). The relevance is keyword +
    vector + neighbour; importance, recency and freshness multiply it, each given as what it
    adds (or takes away) in turn."""

    keyword: float
    vector: float
    neighbour: float
    importance: float
    recency: float
    freshness: float

    @property
    def total(self) -> float:
        return (self.keyword + self.vector + self.neighbour + self.importance + self.recency
                + self.freshness)


def fuse(rows: Sequence[Candidate], weights: RankWeights,
         now: datetime) -> list[tuple[Candidate, Score]]:
    """Candidates (id, cosine, bm25, occurred_at, importance, neighbours; ids unique) ranked
    best first, each with its score's parts (``Score.total`` is the score).

    relevance = bm25 / max(bm25) + dense_weight * cosine, plus neighbour_weight times the best
    relevance among its insertion-order neighbours that occurred within the window; then the
    importance, recency and freshness multipliers.
    """
    if not rows:
        return []
    top_bm25 = max(r.bm25 for r in rows) or 1.0
    base = [r.bm25 / top_bm25 + weights.dense_weight * r.cosine for r in rows]
    when = [r.occurred_at.timestamp() for r in rows]
    window = weights.neighbour_window.total_seconds()
    now_s = now.timestamp()
    ranked = []
    for i, (row, links) in enumerate(zip(rows, _links(rows), strict=True)):
        at = when[i]
        context = [base[n] for n in links if abs(when[n] - at) <= window]
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
                factors: tuple[float, float, float]) -> Score:
    """relevance x importance x recency x freshness, as parts that add up to it: each factor
    is what it adds to the score so far."""
    importance, recency, freshness = factors
    relevance = keyword + vector + neighbour
    weighted = relevance * importance
    aged = weighted * recency
    return Score(keyword, vector, neighbour, weighted - relevance, aged - weighted,
                 aged * freshness - aged)


def _links(rows: Sequence[Candidate]) -> list[set[int]]:
    """Each row's neighbours among the returned rows, by position, both ways (adjacency is
    symmetric)."""
    position = {r.id: i for i, r in enumerate(rows)}
    links: list[set[int]] = [set() for _ in rows]
    for i, row in enumerate(rows):
        for other in row.neighbours or ():
            j = position.get(other)
            if j is not None and j != i:
                links[i].add(j)
                links[j].add(i)
    return links
