"""Leave-one-conversation-out cross-validation of the fusion weights (`team-memory eval locomo`).

A change of embedding model changes the scale of the cosine side, so the weight it gets against
BM25 (``dense_weight``) and the neighbour weight may want other values; choosing them on the
conversations they are then scored on would flatter the new model. For every question the
evaluation keeps the hybrid statement's candidates (the rows search_memory fuses); each point
of the grid below ranks them with the pure fusion (``rules.ranking.fuse``). Each conversation's
questions are then ranked with the grid point that gives the best mean turn-level R@10 on the
other conversations, and only those held-out rankings are scored.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import product

from team_memory.locomo import KS, AskedQuestion, MethodResult
from team_memory_core.rules.ranking import RankWeights, fuse

DENSE_WEIGHTS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
NEIGHBOUR_WEIGHTS = (0.25, 0.5, 0.75)
SELECTION_K = 10


@dataclass(frozen=True)
class CrossValidated:
    result: MethodResult  # held-out rankings only
    chosen: dict[str, RankWeights]  # per held-out conversation
    at_defaults: MethodResult  # the kept candidates fused with ``base`` (= search_memory)


def cross_validate(asked: Sequence[AskedQuestion], base: RankWeights,
                   now: datetime) -> CrossValidated:
    grid = [replace(base, dense_weight=dense, neighbour_weight=neighbour)
            for dense, neighbour in product(DENSE_WEIGHTS, NEIGHBOUR_WEIGHTS)]
    found = [[_found(question, weights, now) for weights in grid] for question in asked]
    recall = [[_recall(hits, question.evidence) for hits in per_point]
              for question, per_point in zip(asked, found, strict=True)]
    result, chosen = MethodResult(), {}
    for held_out in dict.fromkeys(q.conversation for q in asked):
        training = [row for q, row in zip(asked, recall, strict=True)
                    if q.conversation != held_out]
        best = max(range(len(grid)), key=lambda point: (
            statistics.fmean(row[point] for row in training) if training else 0.0))
        chosen[held_out] = grid[best]
        for question, per_point in zip(asked, found, strict=True):
            if question.conversation == held_out:
                result.add(per_point[best], question.evidence, None)
    at_defaults = MethodResult()
    for question in asked:
        at_defaults.add(_found(question, base, now), question.evidence, None)
    return CrossValidated(result, chosen, at_defaults)


def _found(question: AskedQuestion, weights: RankWeights, now: datetime) -> list[set[str]]:
    ranked = fuse(question.candidates, weights, now)[:max(KS)]
    return [question.turns.get(row.id, set()) for row, _ in ranked]


def _recall(found: list[set[str]], evidence: frozenset[str]) -> float:
    hit = set().union(*found[:SELECTION_K]) & evidence
    return len(hit) / len(evidence)


def describe(chosen: dict[str, RankWeights]) -> str:
    picks = ", ".join(f"{conversation.removeprefix('locomo-')}: dense {w.dense_weight:g}, "
                      f"neighbour {w.neighbour_weight:g}" for conversation, w in chosen.items())
    return f"weights chosen on the other conversations, per held-out conversation: {picks}"
