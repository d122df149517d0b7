"""The dedupe decision for a saved memory and the ingestion's result."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel

from team_memory_core.contract import Policy
from team_memory_core.models.memories import MemoryStatus


class DecisionKind(StrEnum):
    ADD = "add"
    DUPLICATE = "duplicate"
    UPDATE = "update"
    SUPERSEDE = "supersede"


class Screening(BaseModel):
    """Claude Haiku's verdict on whether a new memory's text is aimed at AI agents."""

    aimed_at_agents: bool
    reason: str = ""


class Decision(BaseModel):
    kind: DecisionKind
    target_id: UUID | None = None
    merged_content: str | None = None
    reason: str
    policy: Policy
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    # Kept without a model decision (API down, malformed reply): the nightly run revisits it.
    needs_review: bool = False
    # The model's UPDATE or SUPERSEDE of another author's memory: not applied. The memory is
    # kept (kind ADD) and the proposal (target_id, merged_content) is held for review.
    held: DecisionKind | None = None
    # The model's injection screening, when the model was asked (None: it was not).
    screening: Screening | None = None


class IngestResult(BaseModel):
    memory_id: UUID
    decision: DecisionKind
    target_id: UUID | None = None
    status: MemoryStatus
    # The project's first committed memory: its consolidation schedule is yet to be created.
    schedule_needed: bool = False
