"""The score's parts (explain): they sum to the score, and the score is the ranking's own
(relevance x importance x recency x freshness, docs/retrieval.md)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from team_memory_core.rules.ranking import RankWeights, boost, freshness_factor, fuse
from team_memory_core.store.search import Candidate

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def candidate(bm25: float, cosine: float, importance: int, days: float,
              freshness: str | None = None, neighbours: list[uuid.UUID] | None = None,
              memory_id: uuid.UUID | None = None) -> Candidate:
    return Candidate(memory_id or uuid.uuid4(), "default", "general", "text", importance,
                     "active", NOW - timedelta(days=days), freshness, [], cosine, bm25,
                     neighbours, 10, "alice", "tool", None, None)


def test_parts_sum_to_the_score_the_ranking_orders_by() -> None:
    weights = RankWeights()
    first, second = uuid.uuid4(), uuid.uuid4()
    rows = [candidate(3.0, 0.8, 5, 400, "changed", [second], first),
            candidate(1.0, 0.6, 1, 400 - 10 / 1440, None, [first], second),  # 10 min later
            candidate(0.0, 0.3, 3, 30, "gone")]
    ranked = fuse(rows, weights, NOW)
    for row, parts in ranked:
        base = {r.id: r.bm25 / 3.0 + weights.dense_weight * r.cosine for r in rows}
        neighbour = max((base[n] for n in row.neighbours or ()), default=0.0)  # in the window
        relevance = base[row.id] + weights.neighbour_weight * neighbour
        age_days = (NOW - row.occurred_at).total_seconds() / 86400
        expected = (relevance * boost(row.importance, age_days, weights)
                    * freshness_factor(row.freshness))
        assert math.isclose(parts.total, expected, rel_tol=1e-9)
        assert math.isclose(parts.keyword + parts.vector + parts.neighbour, relevance)
    scores = [parts.total for _, parts in ranked]
    assert scores == sorted(scores, reverse=True)
    by_id = {row.id: parts for row, parts in ranked}
    assert by_id[first].importance > 0 and by_id[first].recency < 0
    assert by_id[first].freshness < 0 and by_id[second].freshness == 0
    assert by_id[second].neighbour > 0
