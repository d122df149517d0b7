"""The reranking study of bench/rerankers.py on hand-made candidates: what a reranker's order
does to recall, and the mix weight chosen on the other conversations only."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from bench.rerankers import MIX_WEIGHTS, study
from team_memory.locomo import AskedQuestion
from team_memory_core.rules.ranking import RankWeights
from team_memory_core.store.search import Candidate

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def candidate(text: str, bm25: float, minutes: int) -> Candidate:
    return Candidate(uuid.uuid4(), "p", "fact", text, 1, "active",
                     NOW - timedelta(days=1, minutes=10 * minutes), None, [], 0.0, bm25,
                     None, 1, "alice", "tool", None, None)


def question(conversation: str, wanted_at: int) -> AskedQuestion:
    """Twenty-five memories fused in falling BM25 order; the evidence is the one at rank
    ``wanted_at`` (0-based), the only text that says "answer"."""
    rows = [candidate("answer" if n == wanted_at else f"filler {n}", 1.0 - n / 100, n)
            for n in range(25)]
    turns = {row.id: {f"D1:{n}"} for n, row in enumerate(rows)}
    return AskedQuestion(conversation, "what is the answer?",
                         frozenset(turns[rows[wanted_at].id]), rows, turns)


class FindsTheAnswer:
    name = "finds the answer"

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return np.array([1.0 if text == "answer" else 0.0 for text in texts])


class Reversed:
    """Ranks the fused order upside down: a reranker that only hurts."""

    name = "reversed"

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return np.arange(len(texts), dtype=np.float64)


def test_a_reranker_lifts_evidence_from_the_top_n_only() -> None:
    """The evidence at fused rank 15 (outside the top 10) comes first once reranked when it is
    among the top N rescored; at rank 22 it is outside the top 20 rescored and stays missed."""
    asked = [question("a", 15), question("b", 15), question("c", 22)]
    result = study(asked, FindsTheAnswer(), 20, RankWeights(), NOW)
    assert result.default.recall(10) == 0.0
    assert result.default.recall(20) == 2 / 3
    assert result.replaced.recall(5) == 2 / 3
    assert result.mixed.recall(10) == 2 / 3
    assert len(result.cpu_ms) == 3


def test_the_mix_weight_of_a_conversation_is_chosen_on_the_others() -> None:
    """Reversing the fused order loses evidence that was first: every held-out conversation
    gets the smallest mix weight (the others' best), which keeps the fused order."""
    asked = [question(name, 0) for name in ("a", "b", "c")]
    result = study(asked, Reversed(), 20, RankWeights(), NOW)
    assert result.replaced.recall(10) == 0.0
    assert set(result.chosen.values()) == {MIX_WEIGHTS[0]}
    assert result.mixed.recall(10) == 1.0
    assert "| reversed | 20 |" in result.row()
