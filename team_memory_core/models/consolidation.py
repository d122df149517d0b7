"""The nightly consolidation's inputs, outcomes and report, and the manifesto."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from team_memory_core.contract import Policy


class ProjectRef(BaseModel):
    tenant_id: UUID
    project: str


class LlmSpend(BaseModel):
    """What a step's model calls cost: the calls, the failed ones and their tokens."""

    llm_calls: int = 0
    llm_failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def spend_plus(self, other: LlmSpend) -> dict[str, int]:
        """The update that adds ``other``'s spend to this one's."""
        return {name: getattr(self, name) + getattr(other, name)
                for name in LlmSpend.model_fields}


class ConsolidationReport(LlmSpend):
    """What one consolidation run did; carried across continue-as-new, returned at the end."""

    run_id: UUID
    tenant: str
    tenant_id: UUID
    project: str
    policy: Policy
    model: str | None = None
    token_budget: int
    page_size: int
    pages: int = 0
    clusters_reviewed: int = 0
    merged: int = 0
    superseded: int = 0
    folded: int = 0
    revisited: int = 0
    archived: int = 0
    held_for_review: int = 0
    skipped_for_budget: int = 0
    manifesto: Literal["pending", "regenerated", "unchanged"] = "pending"
    manifesto_policy: Policy | None = None
    manifesto_rules: int = 0
    notes: list[str] = Field(default_factory=list)
    # Memories whose files changed since they were saved (docs/freshness.md); None in runs
    # recorded before this step existed.
    changed_files: ChangedReview | None = None

    @property
    def tokens_spent(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def tokens_left(self) -> int:
        return max(0, self.token_budget - self.tokens_spent)

    @property
    def changes(self) -> int:
        return self.merged + self.superseded + self.folded + self.archived

    def plus(self, outcome: ClusterOutcome) -> ConsolidationReport:
        return self.model_copy(update={
            "clusters_reviewed": self.clusters_reviewed + int(outcome.reviewed),
            "merged": self.merged + outcome.merged,
            "superseded": self.superseded + outcome.superseded,
            "folded": self.folded + outcome.folded,
            "revisited": self.revisited + outcome.revisited,
            "held_for_review": self.held_for_review + outcome.held_for_review,
            "skipped_for_budget": self.skipped_for_budget + int(outcome.skipped_for_budget),
            **self.spend_plus(outcome),
        })


class ConsolidateInput(BaseModel):
    """Start a run with just tenant and project (schedules and operators do); the rest is the
    state a run hands to itself across continue-as-new."""

    tenant: str
    project: str
    page_size: int | None = Field(default=None, ge=1)
    token_budget: int | None = Field(default=None, ge=0)
    cursor: UUID | None = None
    report: ConsolidationReport | None = None


class RunRequest(BaseModel):
    run_id: UUID
    workflow_id: str
    tenant: str
    project: str
    page_size: int | None = None
    token_budget: int | None = None


class PageRequest(BaseModel):
    tenant_id: UUID
    project: str
    cursor: UUID | None
    page_size: int


class ConsolidationPage(BaseModel):
    """Groups of memory ids to review together (ids only: texts stay out of history)."""

    clusters: list[list[UUID]]
    next_cursor: UUID | None


class StepRequest(BaseModel):
    """A step of a run that may ask the model, within what is left of the run's budget."""

    run_id: UUID
    tenant_id: UUID
    project: str
    tokens_left: int
    allow_llm: bool = True


class ClusterRequest(StepRequest):
    ids: list[UUID]


class ClusterOutcome(LlmSpend):
    reviewed: bool = True  # False: found done already (a retry, or an overlapping group)
    merged: int = 0
    superseded: int = 0
    folded: int = 0
    revisited: int = 0
    held_for_review: int = 0
    skipped_for_budget: bool = False


class ManifestoRequest(StepRequest):
    """Write the project's manifesto again, if its top memories changed."""


class ManifestoOutcome(LlmSpend):
    status: Literal["regenerated", "unchanged"]
    policy: Policy
    rules: int


class ChangedReviewRequest(StepRequest):
    """Review the memories whose files changed since they were saved."""


class ChangedReview(LlmSpend):
    """The review of memories whose files changed: listed for a person, and with Haiku kept
    (anchored to the files' new content), revised (a proposal) or archived (a proposal when
    the evidence comes from another author). Nothing is rewritten without a history event."""

    policy: Policy = Policy.LOCAL
    listed: list[UUID] = Field(default_factory=list)  # the changed memories found, oldest first
    kept: int = 0
    revise_proposed: int = 0
    archived: int = 0
    archive_proposed: int = 0


MANIFESTO_RULE_MAX_CHARS = 200


class ManifestoRule(BaseModel):
    """One rule of a project's manifesto and the memories it rests on. The one shape of a rule:
    the model writes it, the manifestos table stores it (as its JSON) and the views show it."""

    model_config = ConfigDict(frozen=True)

    text: str
    source_ids: list[UUID]


class ManifestoView(BaseModel):
    project: str
    rules: list[ManifestoRule]
    policy: Policy | None = None
    generated_at: datetime | None = None
    tokens: int = 0
