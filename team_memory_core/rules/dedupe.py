"""The local dedupe policy: used when no Anthropic key is set, and before any LLM call.

It only ever answers ADD or DUPLICATE: without a model it cannot tell a paraphrase from a
contradiction ("we use React" / "we use Svelte" are close in embedding space), so it never
merges or supersedes.
"""

from __future__ import annotations

import re

from team_memory_core.contract import Policy
from team_memory_core.models.decisions import Decision, DecisionKind
from team_memory_core.store.ingestion import Neighbour

_WORD = re.compile(r"[\w.+-]+", re.UNICODE)


def _tokens(text: str) -> set[str]:
    return {word.casefold().strip(".") for word in _WORD.findall(text)} - {""}


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the two texts' words: near-duplicates share nearly all of them."""
    left, right = _tokens(a), _tokens(b)
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def exact_duplicate(content_hash: str, neighbours: list[Neighbour]) -> Neighbour | None:
    return next((n for n in neighbours if n.content_hash == content_hash), None)


def local_decision(
    content: str, content_hash: str, neighbours: list[Neighbour], threshold: float
) -> Decision:
    same = exact_duplicate(content_hash, neighbours)
    if same is not None:
        return Decision(kind=DecisionKind.DUPLICATE, target_id=same.id,
                        reason="identical text", policy=Policy.LOCAL)
    for neighbour in neighbours:
        overlap = word_overlap(content, neighbour.content)
        # Both signals must agree: a high cosine alone also matches contradicting statements
        # about the same subject, and differing words (React vs Svelte) show the conflict.
        if neighbour.similarity >= threshold and overlap >= 0.6 and _same_numbers(
            content, neighbour.content
        ):
            return Decision(
                kind=DecisionKind.DUPLICATE, target_id=neighbour.id, policy=Policy.LOCAL,
                reason=f"near duplicate (cosine {neighbour.similarity:.3f}, "
                f"word overlap {overlap:.2f})",
            )
    return Decision(kind=DecisionKind.ADD, reason="no duplicate among similar memories",
                    policy=Policy.LOCAL)


_NUMBER = re.compile(r"\d+(?:\.\d+)*")


def _same_numbers(a: str, b: str) -> bool:
    """'timeout is 30s' and 'timeout is 60s' are different rules, however similar."""
    return set(_NUMBER.findall(a)) == set(_NUMBER.findall(b))
