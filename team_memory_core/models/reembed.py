"""What the ReembedMemories workflow carries: its input, its state across continue-as-new,
its steps' requests and results, and the progress it shows (Temporal UI, `team-memory reembed
status`). No memory text: ids, counts and a model's name."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from team_memory_core.embedder import EmbeddingModel, Provider


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: Provider
    name: str
    dim: int

    @classmethod
    def of(cls, model: EmbeddingModel) -> ModelSpec:
        return cls(provider=model.provider, name=model.name, dim=model.dim)

    @property
    def model(self) -> EmbeddingModel:
        return EmbeddingModel(self.provider, self.name, self.dim)


class Phase(StrEnum):
    STARTING = "starting"  # adding the new model's column and index
    EMBEDDING = "embedding"  # filling the new column, pass after pass
    SWITCHING = "switching"  # the last few vectors and the switch, under the table lock
    RECLAIMING = "reclaiming"  # clearing the old vectors out of the rows
    DONE = "done"


class ReembedState(BaseModel):
    """Where a run stands; carried across continue-as-new, so a restarted worker goes on from
    the last page a step finished."""

    generation: int
    phase: Phase = Phase.EMBEDDING
    tenants: list[UUID] = Field(default_factory=list)  # of this pass, visited in order
    tenant_index: int = 0
    cursor: UUID | None = None  # the last memory id of the tenant's last page
    passes: int = 0
    pass_embedded: int = 0  # vectors written in this pass
    embedded: int = 0  # memories with the new vector, when the pass began + written since
    total: int = 0  # memories with an active vector, when the pass began
    pages: int = 0  # page steps run (embedding and reclaiming), over the whole run
    switch_attempts: int = 0

    @property
    def tenant(self) -> UUID | None:
        return self.tenants[self.tenant_index] if self.tenant_index < len(self.tenants) else None


class ReembedInput(BaseModel):
    model: ModelSpec
    page_size: int = Field(default=200, ge=1, le=5000)
    # A pass that wrote at most this many vectors is followed by the switch, which writes the
    # vectors still missing (memories saved meanwhile) under its lock, if at most this many.
    switch_max_missing: int = Field(default=32, ge=1, le=1000)
    state: ReembedState | None = None


# The memo key holding the whole ReembedProgress.
MEMO_PROGRESS = "reembed"


class ReembedProgress(BaseModel):
    """What the progress query answers and the memo shows."""

    model: ModelSpec
    generation: int
    phase: Phase
    embedded: int
    total: int
    passes: int
    pages: int
    switch_attempts: int

    @classmethod
    def of(cls, job: ReembedInput, state: ReembedState) -> ReembedProgress:
        return cls(model=job.model, generation=state.generation, phase=state.phase,
                   embedded=state.embedded, total=state.total, passes=state.passes,
                   pages=state.pages, switch_attempts=state.switch_attempts)


class BeginRequest(BaseModel):
    model: ModelSpec
    workflow_id: str


class PassRequest(BaseModel):
    count: bool  # count the memories with and without the new vector (before the switch)


class PassStart(BaseModel):
    tenants: list[UUID]
    embedded: int
    total: int


class PageRequest(BaseModel):
    model: ModelSpec
    tenant_id: UUID
    cursor: UUID | None
    page_size: int


class PageResult(BaseModel):
    written: int
    next_cursor: UUID | None  # None: the tenant has no memory after this page


class SwitchRequest(BaseModel):
    model: ModelSpec
    generation: int
    max_missing: int


class SwitchResult(BaseModel):
    switched: bool
    missing: int  # vectors still missing when the lock was taken (written if switched)


class ReclaimRequest(BaseModel):
    tenant_id: UUID
    cursor: UUID | None
    page_size: int
