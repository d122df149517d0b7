"""Promotion and review as they cross boundaries: the outcome of a promotion or a review
decision, and a memory waiting in the review queue."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, Field

from team_memory_core.models.memories import Scope


class Sharing(StrEnum):
    SHARED = "shared"  # shared now (shared_id: the shared memory)
    WAITING = "waiting"  # waiting for another member's approval
    REJECTED = "rejected"  # not shared: it stays its author's personal memory
    APPLIED = "applied"  # a merge or supersede, approved and applied (result_id)


class ReviewKind(StrEnum):
    """What a review-queue entry would do once approved."""

    PROMOTE = "promote"  # share a member's personal memory with its project or the team
    MERGE = "merge"  # rewrite shared memories as one text the model proposed
    SUPERSEDE = "supersede"  # retire a shared memory in favour of a newer one


class Promoted(BaseModel):
    """What became of a personal memory's promotion."""

    id: UUID  # the personal memory
    status: Sharing
    scope: Scope
    project: str  # where it is (or would be) shared: its project, or '*' for the team
    shared_id: UUID | None = None


class Decided(Promoted):
    """The outcome of a review decision: a promotion's (as ``Promoted``), or a held merge's
    or supersede's (``proposal``: its number; ``result_id``: the memory that replaces the
    ones it changed, once applied; ``waiting_for``: the authors whose approval it awaits)."""

    kind: ReviewKind = ReviewKind.PROMOTE
    proposal: int | None = None
    result_id: UUID | None = None
    waiting_for: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, promoted: Promoted) -> Decided:
        return cls(**promoted.model_dump())


class ReplacedMemory(BaseModel):
    """A memory a merge or supersede in the review queue would rewrite or retire (or, for a
    supersede's newer memory, keep): its current text, untrusted like every memory's."""

    id: UUID
    content: str
    author: str | None
    status: str
    changed: bool  # the change rewrites or retires it (its author decides)


class WaitingMemory(BaseModel):
    """A memory in the review queue: a member's personal memory waiting to be shared."""

    id: UUID  # approve_memory / reject_memory take this id
    project: str
    scope: Scope  # where it would be shared
    content: str
    author: str | None
    cause: str  # promotion (a member promoted it) | capture (observed in a session)
    # A promotion: the caller's own (another member must approve it); a merge or supersede:
    # approved by the caller, waiting for another author.
    yours: bool
    waiting_since: datetime
    # A held merge or supersede (docs/security.md, "Merge review"): content is the merged
    # text the model proposed (a supersede: the newer memory's), memories the current texts.
    kind: ReviewKind = ReviewKind.PROMOTE
    proposal: int | None = None  # approve_memory / reject_memory take it when id has several
    memories: list[ReplacedMemory] = Field(default_factory=list)
    # The authors (member names) whose approval it still awaits.
    waiting_for: list[str] = Field(default_factory=list)
