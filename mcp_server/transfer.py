"""Bulk import and export of memories as JSONL, through the same durable ingestion path.

Import validates every line first (nothing is written if one is bad), then saves each item
with ``MemoryService.save`` (a pending row and an IngestMemory workflow, as a tool call would),
a bounded number at a time, and waits until the workflows have committed them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_server.errors import Forbidden, InvalidInput
from mcp_server.memories import InsertOrder, MemoryService
from mcp_server.validation import check_files, check_injection_flags, prepare_memory
from team_memory_core.models.anchors import AnchorInput
from team_memory_core.models.memories import Category, Memory, Origin, Provenance, Scope
from team_memory_core.models.principal import Principal

Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total); phase is "saved" or "committed"."""


class ImportItem(BaseModel):
    """One JSONL line. Export writes more fields (id, project, status...); import ignores them."""

    model_config = ConfigDict(extra="ignore")

    content: str
    category: str = Category.GENERAL.value
    importance: int = 1
    tags: list[str] = Field(default_factory=list)
    occurred_at: datetime | None = None
    source: str | None = None
    # The files it cites: paths, or {"path", "blob"} with the hash it was saved against.
    files: list[AnchorInput | str] = Field(default_factory=list)
    # Why the exporting Team Memory flagged it as aimed at AI agents: kept (the rules run
    # again on import, and cannot see what Claude Haiku saw); a file can add flags, never
    # clear one.
    injection_flags: list[str] = Field(default_factory=list)
    # Provenance, kept from an export: the author (a member of the tenant, by name), the
    # origin (default: import), the capture session, the scope (default: the project).
    author: str | None = None
    origin: Origin = Origin.IMPORT
    session: str | None = None
    scope: Scope = Scope.PROJECT

    def provenance(self, authors: dict[str, UUID], importer: Principal) -> Provenance:
        author = importer.member_id if self.author is None else authors.get(self.author)
        return Provenance(author_id=author, origin=self.origin, session=self.session)

    def project_in(self, project: str) -> str | None:
        """Where it goes: the import's project, or every project for a team memory."""
        return None if self.scope is Scope.TEAM else project


class ImportFailed(ValueError):
    """The file has bad lines; nothing was imported."""


@dataclass(frozen=True)
class ImportReport:
    saved: int
    already_saved: int
    pending: int
    ids: list[UUID]


def parse_jsonl(lines: Iterable[str]) -> list[ImportItem]:
    items, errors = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(ImportItem.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as error:
            errors.append(f"line {number}: {_short(error)}")
    if errors:
        raise ImportFailed(_summary(errors))
    return items


def validate(service: MemoryService, principal: Principal, items: list[ImportItem],
             project: str, authors: dict[str, UUID]) -> None:
    """Every item through the save path's own checks, before anything is written; an author
    must be a member of the tenant."""
    errors = []
    for number, item in enumerate(items, start=1):
        try:
            if item.author is not None and item.author not in authors:
                raise InvalidInput(f"author {item.author!r} is not a member of the tenant "
                                   "(team-memory member add)")
            prepared = prepare_memory(service.settings, principal, item.content,
                                      category=item.category, importance=item.importance,
                                      tags=item.tags, project=item.project_in(project),
                                      occurred_at=item.occurred_at, source=item.source,
                                      scope=item.scope.value,
                                      provenance=item.provenance(authors, principal))
            check_files(item.files, prepared.project)
            check_injection_flags(item.injection_flags)
        except (InvalidInput, Forbidden) as error:
            errors.append(f"item {number}: {error}")
    if errors:
        raise ImportFailed(_summary(errors))


async def import_items(
    service: MemoryService, principal: Principal, items: list[ImportItem], project: str, *,
    concurrency: int = 8, progress: Progress | None = None, wait_timeout: float = 3600.0,
) -> ImportReport:
    """Save every item (validated first), then wait for their workflows to commit them."""
    authors = await service.member_ids(principal, sorted({i.author for i in items
                                                          if i.author is not None}))
    validate(service, principal, items, project, authors)
    report = progress or (lambda _phase, _done, _total: None)
    results: list[tuple[UUID, bool] | None] = [None] * len(items)
    order = InsertOrder()  # rows keep the file's order (export order, search neighbours)
    next_index = 0
    done = 0

    async def saver() -> None:
        nonlocal next_index, done
        while next_index < len(items):
            index, next_index = next_index, next_index + 1
            item = items[index]
            saved = await service.save(
                principal, item.content, category=item.category, importance=item.importance,
                tags=item.tags, project=item.project_in(project), occurred_at=item.occurred_at,
                source=item.source, files=item.files, turn=order.turn(index),
                injection_flags=item.injection_flags,
                scope=item.scope.value, provenance=item.provenance(authors, principal),
            )
            results[index] = (saved.id, saved.already_saved)
            done += 1
            report("saved", done, len(items))

    await asyncio.gather(*(saver() for _ in range(max(1, concurrency))))
    saved_ids = [r[0] for r in results if r is not None]
    pending = await _wait_committed(service, principal, saved_ids, report, wait_timeout)
    return ImportReport(saved=sum(1 for r in results if r and not r[1]),
                        already_saved=sum(1 for r in results if r and r[1]),
                        pending=pending, ids=list(dict.fromkeys(saved_ids)))


async def _wait_committed(service: MemoryService, principal: Principal, ids: list[UUID],
                          report: Progress, wait_seconds: float) -> int:
    """Poll until no imported memory is pending (or the timeout); returns how many items
    are still pending. Progress counts items (two identical items share one memory)."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    remaining = list(dict.fromkeys(ids))
    while True:
        still: set[UUID] = set()
        for start in range(0, len(remaining), 1000):
            still.update(await service.pending(principal, remaining[start:start + 1000]))
        remaining = [i for i in remaining if i in still]
        left = sum(1 for i in ids if i in still)
        report("committed", len(ids) - left, len(ids))
        if not remaining or asyncio.get_running_loop().time() > deadline:
            return left
        await asyncio.sleep(0.5)


async def export_lines(service: MemoryService, principal: Principal,
                       project: str) -> AsyncIterator[str]:
    async for memory in service.export(principal, project):
        yield export_line(memory)


def export_line(memory: Memory) -> str:
    return json.dumps({
        "id": str(memory.id), "project": memory.project, "content": memory.content,
        "category": memory.category.value, "importance": memory.importance,
        "tags": memory.tags, "occurred_at": memory.occurred_at.isoformat(),
        "source": memory.source, "status": memory.status.value,
        "created_at": memory.created_at.isoformat(),
        "author": memory.author, "origin": memory.origin.value, "scope": memory.scope.value,
        **({"session": memory.origin_session} if memory.origin_session else {}),
        **({"files": [{"path": a.path, "blob": a.blob} for a in memory.anchors],
            "freshness": memory.freshness} if memory.anchors else {}),
        **({"injection_flags": memory.injection_flags} if memory.injection_flags else {}),
    }, ensure_ascii=False)


def _short(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "line"
        return f"{where}: {first['msg']}"
    return str(error)


def _summary(errors: list[str]) -> str:
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return "nothing imported; fix these first:\n" + "\n".join(errors[:10]) + more


def read_lines(handle: IO[str]) -> list[str]:
    return handle.read().splitlines()
