"""The pure parts of consolidation: grouping, the local manifesto and its token budget."""

from __future__ import annotations

import uuid

from team_memory_core.models.consolidation import ManifestoRule
from team_memory_core.models.memories import Category
from team_memory_core.rules.consolidation import (
    local_manifesto,
    neighbourhood_page,
    render_manifesto,
    rule_text,
    within_budget,
)
from team_memory_core.rules.text import approx_tokens
from team_memory_core.store.consolidation import Neighbourhood, WeightedMemory


def _row(seed: uuid.UUID, neighbour: uuid.UUID | None, *, reviewed: bool = False,
         neighbour_reviewed: bool = False, needs_review: bool = False) -> Neighbourhood:
    return Neighbourhood(seed=seed, neighbour=neighbour, reviewed=reviewed,
                         neighbour_reviewed=neighbour_reviewed, needs_review=needs_review)


def test_reviewed_neighbourhoods_are_skipped_and_flagged_loners_kept() -> None:
    a, b, c, d = sorted(uuid.uuid4() for _ in range(4))
    rows = [
        _row(a, b),                                            # new: reviewed
        _row(b, a, reviewed=True, neighbour_reviewed=True),    # all reviewed: skipped
        _row(c, None, needs_review=True, reviewed=False),      # alone but flagged
        _row(d, None),                                         # alone: nothing to do
    ]
    page = neighbourhood_page(rows, page_size=4)
    assert page.clusters == [[a, b], [c]]
    assert page.next_cursor == d  # a full page: there may be more
    assert neighbourhood_page(rows, page_size=5).next_cursor is None


def test_rule_text_is_the_first_sentence_within_the_limit() -> None:
    assert rule_text("Use UUID v7 keys. They sort by time.") == "Use UUID v7 keys."
    assert len(rule_text("x" * 500)) == 200


def test_local_manifesto_keeps_rank_and_budget() -> None:
    top = [WeightedMemory(id=uuid.uuid4(), category=Category.GENERAL, importance=1, weight=1.0,
                          content=f"Rule number {n} is about something specific.")
           for n in range(30)]
    rules = local_manifesto(top, max_rules=10, token_budget=60)
    assert 1 <= len(rules) < 10
    assert approx_tokens(render_manifesto(rules)) <= 60
    assert rules[0] == ManifestoRule(text="Rule number 0 is about something specific.",
                                     source_ids=[top[0].id])
    assert within_budget(rules, max_rules=2, token_budget=10_000) == rules[:2]
