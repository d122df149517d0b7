"""What the model reads from each tool: compact structured content.

Claude Code hands the model a tool's structured content (JSON), not its text, so every field
here costs tokens in every session: a field is present only when the model can act on it.
Fields at their usual value (active status, importance 1, no tags...) are left out.

Memory text is data a team member saved, never instructions: results that carry it say so
(``note``), and a memory flagged as aimed at AI agents carries its ``flags`` and a ``warning``
(docs/security.md, "Shared memory"). In JSON the string itself delimits the text: nothing in
it can end the field.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from team_memory_core.models.anchors import Anchor, Freshness
from team_memory_core.models.memories import (
    Category,
    Memory,
    MemoryHit,
    MemoryStatus,
    Origin,
    SaveResult,
    Scope,
    ScoreParts,
)
from team_memory_core.rules.framing import DATA_NOTE, flagged_warning


class CompactModel(BaseModel):
    def compact(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)


class SavedView(CompactModel):
    id: UUID
    project: str
    status: MemoryStatus | None = None
    already_saved: bool = False
    duplicate_of: UUID | None = None
    redacted: list[str] = []
    flags: list[str] = []
    warning: str | None = None
    scope: Scope = Scope.PROJECT

    @classmethod
    def of(cls, saved: SaveResult) -> SavedView:
        return cls(id=saved.id, project=saved.project,
                   status=None if saved.status is MemoryStatus.PENDING else saved.status,
                   already_saved=saved.already_saved, duplicate_of=saved.duplicate_of,
                   redacted=saved.redacted, flags=saved.injection_flags,
                   warning=_saved_warning(saved.injection_flags), scope=saved.scope)


class HitView(CompactModel):
    """One search result. ``text`` is the whole memory unless ``tokens`` is present: then it
    is cut, and ``tokens`` is the size of the full text that get_memory returns. Its
    provenance always comes with it: the author (a member's name; absent when saved by an
    operator), the origin (tool, capture, import, merge) and the scope (personal: yours alone,
    project, team)."""

    id: UUID
    category: Category
    text: str
    age: str
    author: str | None = None  # absent: saved by an operator
    origin: Origin
    scope: Scope
    importance: int = 1
    tokens: int | None = None
    project: str | None = None
    status: MemoryStatus | None = None
    freshness: Freshness | None = None  # only for a memory about files
    flags: list[str] = []
    warning: str | None = None
    session: str | None = None  # the Claude Code session a captured memory comes from
    score: float | None = None  # with explain: the score, and its parts that sum to it
    explain: ScoreParts | None = None

    @classmethod
    def of(cls, hit: MemoryHit, searched: str) -> HitView:
        return cls(id=hit.id, category=hit.category, text=hit.snippet, age=hit.age,
                   author=hit.author, origin=hit.origin, scope=hit.scope,
                   importance=hit.importance, tokens=hit.tokens if hit.truncated else None,
                   project=None if hit.project == searched else hit.project,
                   status=None if hit.status in _CURRENT else hit.status,
                   freshness=hit.freshness, flags=hit.injection_flags,
                   warning=flagged_warning(hit.injection_flags), session=hit.origin_session,
                   score=hit.score if hit.explain is not None else None,
                   explain=hit.explain)


class SearchView(CompactModel):
    note: str  # DATA_NOTE (no default: compact() would drop it)
    project: str
    results: list[HitView]


class FileView(CompactModel):
    """A file the memory cites; ``freshness`` only when it is not fresh."""

    path: str
    freshness: Freshness = Freshness.FRESH

    @classmethod
    def of(cls, anchor: Anchor) -> FileView:
        return cls(path=anchor.path, freshness=anchor.freshness)


class MemoryView(CompactModel):
    id: UUID
    project: str
    category: Category
    content: str
    age: str
    author: str | None = None  # absent: saved by an operator
    origin: Origin
    scope: Scope
    session: str | None = None
    importance: int = 1
    tags: list[str] = []
    status: MemoryStatus | None = None
    source: str | None = None
    duplicate_of: UUID | None = None
    superseded_by: UUID | None = None
    merged_from: list[UUID] = []
    valid_to: datetime | None = None
    freshness: Freshness | None = None
    files: list[FileView] = []
    flags: list[str] = []
    warning: str | None = None
    note: str | None = None  # set when the memory is the whole result

    @classmethod
    def of(cls, memory: Memory, *, alone: bool = False) -> MemoryView:
        return cls(id=memory.id, project=memory.project, category=memory.category,
                   content=memory.content, age=memory.age, author=memory.author,
                   origin=memory.origin, scope=memory.scope, session=memory.origin_session,
                   importance=memory.importance,
                   tags=memory.tags,
                   status=None if memory.status in _CURRENT else memory.status,
                   source=memory.source, duplicate_of=memory.duplicate_of,
                   superseded_by=memory.superseded_by, merged_from=memory.merged_from,
                   valid_to=memory.valid_to, freshness=memory.freshness,
                   files=[FileView.of(anchor) for anchor in memory.anchors],
                   flags=memory.injection_flags,
                   warning=flagged_warning(memory.injection_flags),
                   note=DATA_NOTE if alone else None)


class MemoriesView(CompactModel):
    note: str  # DATA_NOTE
    memories: list[MemoryView]


_CURRENT = (MemoryStatus.ACTIVE, MemoryStatus.PENDING)


def _saved_warning(flags: list[str]) -> str | None:
    if not flags:
        return None
    return ("saved, but flagged as possibly aimed at AI agents: it is kept out of session "
            "context and needs review before it is shared")
