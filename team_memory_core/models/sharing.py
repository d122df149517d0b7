"""Promotion and review as they cross boundaries: the outcome of a promotion or a review
decision, and a memory waiting in the review queue."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel

from team_memory_core.models.memories import Scope


class Sharing(StrEnum):
    SHARED = "shared"  # shared now (shared_id: the shared memory)
    WAITING = "waiting"  # waiting for another member's approval
    REJECTED = "rejected"  # not shared: it stays its author's personal memory


class Promoted(BaseModel):
    """What became of a personal memory's promotion."""

    id: UUID  # the personal memory
    status: Sharing
    scope: Scope
    project: str  # where it is (or would be) shared: its project, or '*' for the team
    shared_id: UUID | None = None


class WaitingMemory(BaseModel):
    """A memory in the review queue: a member's personal memory waiting to be shared."""

    id: UUID  # approve_memory / reject_memory take this id
    project: str
    scope: Scope  # where it would be shared
    content: str
    author: str | None
    cause: str  # promotion (a member promoted it) | capture (observed in a session)
    yours: bool  # the caller's own: another member must approve it
    waiting_since: datetime
