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

from pydantic import BaseModel, Field

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


def memory_id_for(tenant_id: UUID, project: str, digest: str) -> UUID:
    """The same content saved twice in one tenant and project gets the same id."""
    return uuid.uuid5(_MEMORY_ID_NAMESPACE, f"{tenant_id}/{project}/{digest}")


def ingest_workflow_id(tenant_name: str, project: str, digest: str) -> str:
    return f"ingest/{tenant_name}/{project}/{digest[:24]}"


class Principal(BaseModel):
    """Who is calling: resolved from an API key (or the stdio configuration)."""

    tenant_id: UUID
    tenant_name: str
    key_id: UUID | None = None
    project: str | None = None
    read_only: bool = False


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
    policy: Literal["haiku", "local"]
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


class IngestResult(BaseModel):
    memory_id: UUID
    decision: DecisionKind
    target_id: UUID | None = None
    status: MemoryStatus


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


class Memory(BaseModel):
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
    dedupe_policy: Literal["haiku", "local"]
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
