"""Memories as they cross boundaries: what is saved, stored, found and shown, their
statuses and history, and the content-derived ids."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from team_memory_core.contract import Policy, ingest_workflow_id
from team_memory_core.models.anchors import Anchor, Freshness

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


class Scope(StrEnum):
    """Who sees a memory: its author alone, its project's members, or every project's."""

    PERSONAL = "personal"
    PROJECT = "project"
    TEAM = "team"


class Origin(StrEnum):
    """How a memory came in (its provenance, with its author)."""

    TOOL = "tool"  # save_memory, the browser, the API
    CAPTURE = "capture"  # distilled from a Claude Code session's hook events
    IMPORT = "import"
    MERGE = "merge"  # its text was rewritten by merging memories (ingestion, consolidation)


def scope_of(project: str, private_to: UUID | None) -> Scope:
    if private_to is not None:
        return Scope.PERSONAL
    return Scope.TEAM if project == TENANT_WIDE_PROJECT else Scope.PROJECT


def memory_id_for(tenant_id: UUID, project: str, digest: str, generation: int = 0,
                  private_to: UUID | None = None) -> UUID:
    """The same content saved twice in one tenant and project gets the same id. Saved again
    after its memory was forgotten or purged, it is a new memory: the next generation. A
    personal memory's id derives from its member too: the same text saved personally by two
    members, or personally and shared, is two memories."""
    personal = f"/personal/{private_to}" if private_to is not None else ""
    suffix = f"/g{generation}" if generation else ""
    return uuid.uuid5(_MEMORY_ID_NAMESPACE,
                      f"{tenant_id}/{project}/{digest}{personal}{suffix}")


class Provenance(BaseModel):
    """Who saved a memory and how it came in, when the caller says so (an import keeps the
    exported provenance); otherwise it is the caller's member, by a tool call."""

    author_id: UUID | None = None
    origin: Origin = Origin.TOOL
    session: str | None = None


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
    # Provenance (sql/017); inputs recorded before it have the defaults.
    author_id: UUID | None = None
    origin: Origin = Origin.TOOL
    origin_session: str | None = None
    # The member a personal memory belongs to (None: shared).
    private_to: UUID | None = None

    def next_generation(self) -> IngestInput:
        """The same text as a new memory (its earlier memory was forgotten or purged)."""
        generation = self.generation + 1
        return self.model_copy(update={
            "generation": generation,
            "memory_id": memory_id_for(self.tenant_id, self.project, self.content_hash,
                                       generation, self.private_to),
        })

    def workflow_id(self, tenant_name: str) -> str:
        """Its IngestMemory workflow's id."""
        return ingest_workflow_id(tenant_name, self.project, self.content_hash,
                                  self.generation, self.private_to)


class SaveResult(BaseModel):
    id: UUID
    status: MemoryStatus
    project: str
    workflow_id: str
    duplicate_of: UUID | None = None
    already_saved: bool = False
    redacted: list[str] = Field(default_factory=list)
    # Its text looks aimed at AI agents (the local rules; Claude Haiku may add its own flag).
    injection_flags: list[str] = Field(default_factory=list)
    scope: Scope = Scope.PROJECT


class ScoreParts(BaseModel):
    """A search score taken apart (rules/ranking.py): the parts sum to the score. The
    relevance is keyword + vector + neighbour; importance, recency and freshness multiply it,
    and each of them is given as what it adds (or takes away) in turn: importance =
    relevance x (importance factor - 1), recency = (relevance + importance) x (recency factor
    - 1), freshness = (the rest so far) x (freshness factor - 1)."""

    keyword: float  # BM25, relative to the best keyword match among the candidates
    vector: float  # dense_weight x cosine similarity
    neighbour: float  # neighbour_weight x the best relevance of a neighbour in insertion order
    importance: float
    recency: float
    freshness: float  # 0 unless the files it cites changed or went

    @property
    def total(self) -> float:
        return (self.keyword + self.vector + self.neighbour + self.importance + self.recency
                + self.freshness)


class MemoryLabels(BaseModel):
    """What a reader is told about a memory beside its text, in a search hit and in the memory
    itself alike."""

    # How the files it cites compare with when it was saved (None: it cites none).
    freshness: Freshness | None = None
    # Why it was flagged as possibly aimed at AI agents, by the rules' codes and "model" for
    # Claude Haiku's verdict (team_memory_core/rules/injection.py); empty: not flagged.
    injection_flags: list[str] = Field(default_factory=list)
    # Provenance (sql/017): the member who saved it (its name), how it came in (the Claude
    # Code session for a captured one) and who sees it.
    author: str | None = None
    origin: Origin = Origin.TOOL
    origin_session: str | None = None
    scope: Scope = Scope.PROJECT


class MemoryHit(MemoryLabels):
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
    # The score's parts (search with explain): they sum to ``score``.
    explain: ScoreParts | None = None


class StoredMemory(MemoryLabels):
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
    # Its files, when the reader asked for them (get, export, the working set's changed ones).
    anchors: list[Anchor] = Field(default_factory=list)


class WorkingSet(BaseModel):
    """Session-start context: the memories that matter most now, within a token budget."""

    project: str
    budget_tokens: int
    tokens: int
    memories: list[Memory]


class HistoryEvent(StrEnum):
    """What can happen to a memory (table memory_events); the one list of them."""

    ADDED = "added"
    KEPT_WITHOUT_DECISION = "kept_without_decision"  # the dedupe decision is held for review
    REDACTED = "redacted"
    DUPLICATE = "duplicate"
    MERGED = "merged"
    MERGED_INTO = "merged_into"
    SUPERSEDED = "superseded"
    REVISITED = "revisited"
    ARCHIVED = "archived"  # written by the decay statement, in SQL
    FORGOTTEN = "forgotten"
    RESTORED = "restored"
    PURGED = "purged"
    MERGE_PROPOSED = "merge_proposed"  # held for review: the memories have other authors
    SUPERSEDE_PROPOSED = "supersede_proposed"
    REVISE_PROPOSED = "revise_proposed"  # its file changed: a revised text, held for review
    ARCHIVE_PROPOSED = "archive_proposed"  # its file changed: archiving it, held for review
    # A file the memory cites (docs/freshness.md): changed since it was saved, back to the
    # saved content, deleted or moved away; or judged still true by the nightly review.
    ANCHOR_CHANGED = "anchor_changed"
    ANCHOR_FRESH = "anchor_fresh"
    ANCHOR_GONE = "anchor_gone"
    ANCHOR_KEPT = "anchor_kept"
    # Its text looks aimed at AI agents (rules, Claude Haiku): kept out of session context.
    FLAGGED = "flagged"
    # Promotion (docs/security.md): a personal memory waiting to be shared, shared (on the
    # personal memory, pointing at the shared one, and on the shared one), or not shared.
    PROMOTE_PROPOSED = "promote_proposed"
    PROMOTED = "promoted"
    PROMOTE_REJECTED = "promote_rejected"
    # A held merge or supersede (docs/security.md, "Merge review"), decided in the review
    # queue: approved by one of the authors it awaits, rejected, or found out of date.
    PROPOSAL_APPROVED = "proposal_approved"
    PROPOSAL_REJECTED = "proposal_rejected"

    @classmethod
    def proposed(cls, kind: str) -> HistoryEvent:
        return cls(f"{kind}_proposed")


class MemoryEvent(BaseModel):
    event: str  # a HistoryEvent; rows written by earlier versions are read as they are
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


def humanize_age(seconds: float) -> str:
    for unit, size in (("y", 31_536_000), ("mo", 2_592_000), ("d", 86_400), ("h", 3_600),
                       ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
