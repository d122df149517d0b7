"""Pydantic models that cross process boundaries (MCP <-> Temporal <-> activities)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from team_memory_core.contract import Policy

# Memories saved to this project are visible from every project of the tenant.
TENANT_WIDE_PROJECT = "*"
PROJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
_MEMORY_ID_NAMESPACE = uuid.UUID("5b0a7c52-8f7e-4d9b-9b43-1f3f3b0e6a11")


class Category(StrEnum):
    ARCHITECTURE = "architecture"
    PREFERENCE = "preference"
    BUGFIX = "bugfix"
    BUSINESS_RULE = "business_rule"
    GENERAL = "general"


class MemoryStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"
    ARCHIVED = "archived"
    FORGOTTEN = "forgotten"


CURRENT_STATUSES = (MemoryStatus.PENDING, MemoryStatus.ACTIVE)
ALL_STATUSES = tuple(MemoryStatus)


def normalize_for_hash(content: str) -> str:
    text = unicodedata.normalize("NFKC", content).casefold()
    return " ".join(text.split()).rstrip(" .!")


def content_hash(content: str) -> str:
    return hashlib.sha256(normalize_for_hash(content).encode()).hexdigest()


def memory_id_for(tenant_id: UUID, project: str, digest: str, generation: int = 0) -> UUID:
    """The same content saved twice in one tenant and project gets the same id. Saved again
    after its memory was forgotten or purged, it is a new memory: the next generation."""
    suffix = f"/g{generation}" if generation else ""
    return uuid.uuid5(_MEMORY_ID_NAMESPACE, f"{tenant_id}/{project}/{digest}{suffix}")


class Principal(BaseModel):
    """Who is calling: resolved from an API key (or the stdio configuration).

    ``project`` binds the key to one project (a permission). ``workspace_project`` is where
    the caller works right now (the repository identity a Claude Code session sends, or the
    stdio server's working directory): only a default for calls that name no project.
    """

    tenant_id: UUID
    tenant_name: str
    key_id: UUID | None = None
    project: str | None = None
    read_only: bool = False
    workspace_project: str | None = None
    # Who the audit trail names: "mcp" for a key's requests, "operator:<user>" for the CLI.
    actor: str = "mcp"

    @property
    def projects(self) -> list[str] | None:
        """The projects a bound key may reach (its own and tenant-wide), None if unbound."""
        return None if self.project is None else sorted({self.project, TENANT_WIDE_PROJECT})


class IngestInput(BaseModel):
    """Workflow input: small, and never a vector (embeddings stay out of history)."""

    memory_id: UUID
    tenant_id: UUID
    project: str
    content: str
    category: Category
    importance: int = Field(ge=1, le=5)
    tags: list[str]
    content_hash: str
    occurred_at: datetime
    source: str | None = None
    key_id: UUID | None = None
    redactions: list[str] = Field(default_factory=list)
    generation: int = Field(default=0, ge=0)

    def next_generation(self) -> IngestInput:
        """The same text as a new memory (its earlier memory was forgotten or purged)."""
        generation = self.generation + 1
        return self.model_copy(update={
            "generation": generation,
            "memory_id": memory_id_for(self.tenant_id, self.project, self.content_hash,
                                       generation),
        })


class DecisionKind(StrEnum):
    ADD = "add"
    DUPLICATE = "duplicate"
    UPDATE = "update"
    SUPERSEDE = "supersede"


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


class IngestResult(BaseModel):
    memory_id: UUID
    decision: DecisionKind
    target_id: UUID | None = None
    status: MemoryStatus
    # The project's first committed memory: its consolidation schedule is yet to be created.
    schedule_needed: bool = False


class SaveResult(BaseModel):
    id: UUID
    status: MemoryStatus
    project: str
    workflow_id: str
    duplicate_of: UUID | None = None
    already_saved: bool = False
    redacted: list[str] = Field(default_factory=list)


class MemoryHit(BaseModel):
    """One line of the compact search index (progressive disclosure: get_memory for full text)."""

    id: UUID
    project: str
    category: Category
    snippet: str
    importance: int
    status: MemoryStatus
    score: float
    age: str
    occurred_at: datetime
    tokens: int
    # The snippet is a cut of the memory (read the rest with get_memory).
    truncated: bool = False


class StoredMemory(BaseModel):
    """A memory's own fields, as stored."""

    id: UUID
    project: str
    content: str
    category: Category
    importance: int
    tags: list[str]
    status: MemoryStatus
    source: str | None
    duplicate_of: UUID | None
    superseded_by: UUID | None
    merged_from: list[UUID]
    valid_from: datetime
    valid_to: datetime | None
    created_at: datetime
    occurred_at: datetime
    updated_at: datetime


class Memory(StoredMemory):
    age: str


class WorkingSet(BaseModel):
    """Session-start context: the memories that matter most now, within a token budget."""

    project: str
    budget_tokens: int
    tokens: int
    memories: list[Memory]


class MemoryEvent(BaseModel):
    event: str
    created_at: datetime
    reason: str | None
    related_id: UUID | None
    policy: str | None
    model: str | None


class MemoryStatusReport(BaseModel):
    id: UUID
    status: MemoryStatus | Literal["unknown"]
    duplicate_of: UUID | None = None
    superseded_by: UUID | None = None
    workflow_id: str | None = None
    dedupe_policy: Policy
    history: list[MemoryEvent] = Field(default_factory=list)


def approx_tokens(text: str) -> int:
    """About four characters a token for English prose; good enough for budgeting."""
    return max(1, (len(text) + 3) // 4)


def humanize_age(seconds: float) -> str:
    for unit, size in (("y", 31_536_000), ("mo", 2_592_000), ("d", 86_400), ("h", 3_600),
                       ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


# --- consolidation ----------------------------------------------------------------------------


class ProjectRef(BaseModel):
    tenant_id: UUID
    project: str


class ConsolidationReport(BaseModel):
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
    llm_calls: int = 0
    llm_failures: int = 0
    skipped_for_budget: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    manifesto: Literal["pending", "regenerated", "unchanged"] = "pending"
    manifesto_policy: Policy | None = None
    manifesto_rules: int = 0
    notes: list[str] = Field(default_factory=list)

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
            "llm_calls": self.llm_calls + outcome.llm_calls,
            "llm_failures": self.llm_failures + outcome.llm_failures,
            "skipped_for_budget": self.skipped_for_budget + int(outcome.skipped_for_budget),
            "input_tokens": self.input_tokens + outcome.input_tokens,
            "output_tokens": self.output_tokens + outcome.output_tokens,
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


class ClusterRequest(BaseModel):
    run_id: UUID
    tenant_id: UUID
    project: str
    ids: list[UUID]
    tokens_left: int
    allow_llm: bool = True


class ClusterOutcome(BaseModel):
    reviewed: bool = True  # False: found done already (a retry, or an overlapping group)
    merged: int = 0
    superseded: int = 0
    folded: int = 0
    revisited: int = 0
    held_for_review: int = 0
    llm_calls: int = 0
    llm_failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    skipped_for_budget: bool = False


class ManifestoRequest(BaseModel):
    run_id: UUID
    tenant_id: UUID
    project: str
    tokens_left: int
    allow_llm: bool = True


class ManifestoOutcome(BaseModel):
    status: Literal["regenerated", "unchanged"]
    policy: Policy
    rules: int
    llm_calls: int = 0
    llm_failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


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
