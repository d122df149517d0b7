"""Text shaping every reader shares: the one-line excerpt and packing into a token budget, each
with one semantics (pure functions, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

_WHITESPACE = re.compile(r"[\s\x00-\x1f\x7f]+")
ELLIPSIS = "…"

T = TypeVar("T")


def approx_tokens(text: str) -> int:
    """About four characters a token for English prose; good enough for budgeting."""
    return max(1, (len(text) + 3) // 4)


def one_line(text: str, limit: int | None = None) -> str:
    """The text on one line (whitespace and control characters collapsed), cut to at most
    ``limit`` characters with the cut marked by an ellipsis."""
    flat = _WHITESPACE.sub(" ", text).strip()
    if limit is None or len(flat) <= limit:
        return flat
    if limit <= 1:
        return ELLIPSIS[:limit]
    return flat[: limit - 1].rstrip() + ELLIPSIS


def within_budget(items: Sequence[T], text_of: Callable[[T], str],
                  budget_tokens: int) -> list[T]:
    """The best-first items that fit in ``budget_tokens``; one too large is skipped, not cut
    (a smaller one after it may still fit)."""
    chosen, used = [], 0
    for item in items:
        cost = approx_tokens(text_of(item))
        if used + cost <= budget_tokens:
            chosen.append(item)
            used += cost
    return chosen
