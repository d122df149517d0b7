"""Leave-one-conversation-out choice of the fusion weights (team_memory/cross_validation.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from team_memory.cross_validation import cross_validate
from team_memory.locomo import AskedQuestion
from team_memory_core.rules.ranking import RankWeights
from team_memory_core.store.search import Candidate

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def candidate(cosine: float, bm25: float, minutes: int) -> Candidate:
    return Candidate(uuid.uuid4(), "p", "fact", "text", 1, "active",
                     NOW - timedelta(days=1, minutes=minutes), None, [], cosine, bm25, None, 1,
                     "alice", "tool", None, None)


def question(conversation: str, evidence_by: str) -> AskedQuestion:
    """Ten fillers (bm25 0.6, cosine 0.5), a keyword match (bm25 1, cosine 0) and a meaning
    match (bm25 0, cosine 0.95): the keyword match is in the top 10 only when the dense weight
    is below 0.8, the meaning match only when it is above 1.34."""
    fillers = [candidate(0.5, 0.6, minutes) for minutes in range(10)]
    keyword, meaning = candidate(0.0, 1.0, 20), candidate(0.95, 0.0, 21)
    turns = {row.id: {f"D1:{n}"} for n, row in enumerate([*fillers, keyword, meaning])}
    wanted = keyword if evidence_by == "keyword" else meaning
    return AskedQuestion(conversation, "question", frozenset(turns[wanted.id]),
                         [*fillers, keyword, meaning], turns)


def test_each_conversation_is_ranked_with_weights_chosen_on_the_others() -> None:
    """Conversation a wants a high dense weight, b a low one: each held-out conversation gets
    the other's choice, so the cross-validated recall is 0 although the default weights
    find a's evidence. Nothing of a conversation leaks into its own weights."""
    asked = [question("a", "meaning") for _ in range(3)] + [question("b", "keyword")]
    checked = cross_validate(asked, RankWeights(), NOW)
    assert checked.chosen["a"].dense_weight == 0.5  # b's best
    assert checked.chosen["b"].dense_weight >= 1.5  # a's best
    assert checked.result.recall(10) == 0.0
    assert checked.at_defaults.recall(10) == 0.75  # dense weight 2: a's three, not b's
    assert checked.result.latencies_ms == []


def test_cross_validation_keeps_weights_that_hold_across_conversations() -> None:
    asked = [question(name, "meaning") for name in ("a", "b", "c") for _ in range(2)]
    checked = cross_validate(asked, RankWeights(), NOW)
    assert checked.result.recall(10) == 1.0
    assert all(weights.dense_weight >= 1.5 for weights in checked.chosen.values())
