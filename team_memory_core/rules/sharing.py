"""When sharing a memory waits for review: the one rule (docs/security.md, "Promotion and
review").

A project is `open` (what its members share is shared at once) or `reviewed` (a promotion of a
personal memory, and an observation captured from a session, wait as a proposal until another
member approves it). Whatever else may route a memory into the review queue later (a memory
flagged as a likely prompt injection) comes in through ``flagged``: every path that shares a
memory asks this function, so one answer holds for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Review(StrEnum):
    OPEN = "open"
    REVIEWED = "reviewed"


class ShareCause(StrEnum):
    """How a memory comes to be shared."""

    SAVE = "save"  # a member saves it shared (save_memory scope project or team)
    PROMOTION = "promotion"  # a member promotes a personal memory
    CAPTURE = "capture"  # distilled from a Claude Code session's hook events


def needs_review(cause: ShareCause, reviews: Iterable[Review], *, flagged: bool = False) -> bool:
    """Whether sharing waits for another member's approval. ``reviews``: the review settings
    of the projects it touches (its own, and the one it is shared with); ``flagged``: the
    memory is marked as suspect (it always waits, whatever the projects say)."""
    if flagged:
        return True
    if cause is ShareCause.SAVE:
        return False  # a member's deliberate save to a shared scope is the member's call
    return Review.REVIEWED in set(reviews)
