"""What the Claude Code hook endpoints do: accept captured events, assemble session context.

Accepting an event = redact it and signal it to the session's SessionObservations workflow
(signal-with-start: the first event starts it). No model is called here. The session-start
context is assembled from the database under a token budget (no LLM call either).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from mcp_server.service import Forbidden, MemoryService
from mcp_server.service import _memory as memory_from_record
from team_memory import queries
from team_memory.capture import (
    CAPTURE_SIGNAL,
    CAPTURE_WORKFLOW,
    FILES_MAX,
    SUMMARY_MAX_CHARS,
    CaptureEvent,
    CaptureSession,
    EventKind,
    capture_workflow_id,
)
from team_memory.db import tenant_tx
from team_memory.models import (
    TENANT_WIDE_PROJECT,
    Category,
    Memory,
    Principal,
    approx_tokens,
)
from team_memory.redaction import redact
from team_memory.temporal import PROJECT_KEY, TENANT_KEY, keyring_of

NO_KEY_NOTE = ("capture is off: no ANTHROPIC_API_KEY, so only explicit memories "
               "(save_memory) are kept; hook events are only counted")
_SIGNAL_CONCURRENCY = 16
_LINE_CHARS = 280
_CATEGORY_WEIGHT = {
    Category.ARCHITECTURE: 1.3, Category.BUSINESS_RULE: 1.3, Category.BUGFIX: 1.1,
    Category.PREFERENCE: 1.2, Category.GENERAL: 1.0,
}


class HookEvent(BaseModel):
    """An event record as a hook sends it (before redaction)."""

    key: str = Field(min_length=1, max_length=200)
    session_id: str = Field(min_length=1, max_length=200)
    kind: EventKind
    project: str = Field(min_length=1, max_length=200)
    tool: str | None = Field(default=None, max_length=100)
    files: list[str] = Field(default_factory=list, max_length=FILES_MAX)
    summary: str = Field(default="", max_length=4 * SUMMARY_MAX_CHARS)
    at: datetime


class HookEvents(BaseModel):
    events: list[HookEvent] = Field(min_length=1, max_length=500)


class ContextRequest(BaseModel):
    session_id: str = Field(default="", max_length=200)
    project: str = Field(min_length=1, max_length=200)
    source: str | None = Field(default=None, max_length=40)


class ManifestoReader(Protocol):
    """Where the project's manifesto rules come from (the manifesto lives on another branch:
    plug its reader in here; without one the context has no manifesto section)."""

    async def rules(self, principal: Principal, project: str) -> list[str]: ...


@dataclass(frozen=True)
class Accepted:
    accepted: int
    capture: bool
    note: str | None


def _clean(text: str, limit: int) -> str:
    cleaned = redact(text).text
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1] + "…"


def clean_event(event: HookEvent) -> CaptureEvent:
    """Truncate and redact (secrets, ``<private>`` spans) before anything is stored."""
    return CaptureEvent(
        key=event.key, session_id=event.session_id, kind=event.kind, tool=event.tool,
        files=[_clean(f, 300) for f in event.files if f.strip()],
        summary=_clean(event.summary, SUMMARY_MAX_CHARS), at=event.at,
    )


@dataclass
class CaptureService:
    memory: MemoryService
    manifesto: ManifestoReader | None = None
    _semaphore: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(_SIGNAL_CONCURRENCY))

    @property
    def enabled(self) -> bool:
        return self.memory.settings.anthropic_api_key is not None

    @property
    def temporal(self) -> Client:
        return self.memory.temporal

    def project_for(self, principal: Principal, project: str) -> str:
        """The hook's project unless the key is bound to one (then always the key's)."""
        try:
            return self.memory.resolve_project(principal, project)
        except Forbidden:
            assert principal.project is not None
            return principal.project

    async def accept(self, principal: Principal, batch: HookEvents) -> Accepted:
        if principal.read_only:
            raise Forbidden("this API key is read-only")
        events = [(self.project_for(principal, e.project), clean_event(e)) for e in batch.events]
        if not self.enabled:
            await self._count_only(principal, events)
            return Accepted(len(events), False, NO_KEY_NOTE)
        keyring = keyring_of(self.temporal)
        for session_id in sorted({event.session_id for _, event in events}):
            await keyring.prepare(principal.tenant_id,
                                  capture_workflow_id(principal.tenant_name, session_id))
        await asyncio.gather(*(self._signal(principal, p, e) for p, e in events))
        return Accepted(len(events), True, None)

    async def _count_only(self, principal: Principal,
                          events: Sequence[tuple[str, CaptureEvent]]) -> None:
        async with tenant_tx(self.memory.pool, principal.tenant_id) as conn:
            for project, event in events:
                await queries.count_capture_received(
                    conn, principal.tenant_id, event.session_id, project, 1, 1,
                    "no ANTHROPIC_API_KEY")

    async def _signal(self, principal: Principal, project: str, event: CaptureEvent) -> None:
        settings = self.memory.settings
        session = CaptureSession.start(principal, project, event.session_id,
                                       batch_events=settings.capture_batch_events,
                                       idle_seconds=settings.capture_idle_minutes * 60)
        async with self._semaphore:
            # Signal-with-start: starts the session's workflow on its first event; a later
            # event (or a replay of this one) is a signal the workflow de-duplicates by key.
            await self.temporal.start_workflow(
                CAPTURE_WORKFLOW, session,
                id=capture_workflow_id(principal.tenant_name, event.session_id),
                task_queue=settings.task_queue,
                start_signal=CAPTURE_SIGNAL, start_signal_args=[event],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(TENANT_KEY, principal.tenant_name),
                    SearchAttributePair(PROJECT_KEY, project),
                ]),
            )

    # --- session-start context --------------------------------------------------------------

    async def session_context(self, principal: Principal, request: ContextRequest,
                              budget_tokens: int | None = None) -> str:
        """The manifesto and the project's working set, within ``budget_tokens``."""
        budget = budget_tokens or self.memory.settings.session_context_tokens
        project = self.project_for(principal, request.project)
        rules = await self.manifesto.rules(principal, project) if self.manifesto else []
        memories = await self.working_set(principal, project)
        return render_context(project, rules, memories, budget, self._capture_line())

    async def working_set(self, principal: Principal, project: str) -> list[Memory]:
        """The project's current memories, most relevant first (importance, category,
        recency). The seam where MemoryService.working_set will plug in."""
        async with tenant_tx(self.memory.pool, principal.tenant_id) as conn:
            rows = await queries.recent_important(
                conn, sorted({project, TENANT_WIDE_PROJECT}), datetime(1970, 1, 1, tzinfo=UTC),
                1, 200)
        memories = [memory_from_record(row) for row in rows]
        half_life = self.memory.settings.recency_half_life_days
        return sorted(memories, key=lambda m: _relevance(m, half_life), reverse=True)

    def _capture_line(self) -> str:
        if self.enabled:
            return ("Capture: on. Tool use in this session is distilled into team memories "
                    "by Claude Haiku (secrets redacted, <private> spans dropped).")
        return f"Capture: off. {NO_KEY_NOTE[len('capture is off: '):]}."


def _relevance(memory: Memory, half_life_days: float) -> float:
    age_days = max(0.0, (datetime.now(UTC) - memory.occurred_at).total_seconds() / 86400)
    recency = 0.5 + 0.5 * math.exp(-math.log(2) * age_days / half_life_days)
    return memory.importance * _CATEGORY_WEIGHT[memory.category] * recency


def _line(memory: Memory) -> str:
    text = " ".join(memory.content.split())
    if len(text) > _LINE_CHARS:
        text = text[:_LINE_CHARS - 1] + "…"
    return f"- [{memory.category}] {text} ({memory.age}, id {str(memory.id)[:8]})"


def render_context(project: str, rules: Sequence[str], memories: Sequence[Memory],
                   budget: int, capture_line: str) -> str:
    """Greedy packing, most relevant first: the result never exceeds ``budget`` tokens."""
    head = [f"# Team Memory for {project}"]
    tail = ["", capture_line,
            "Use search_memory for more; save_memory for decisions the team should keep."]
    used = approx_tokens("\n".join(head + tail))
    sections: list[str] = []
    for title, lines in (("## Manifesto", [f"- {r}" for r in rules]),
                         ("## Working set (most relevant first)", [_line(m) for m in memories])):
        kept = _pack(title, lines, budget - used)
        if kept:
            used += approx_tokens("\n".join(kept)) + 1
            sections.extend(["", *kept])
    if not sections:
        sections = ["", "No memories for this project yet."]
    text = "\n".join(head + sections + tail)
    return text if approx_tokens(text) <= budget else text[:max(0, budget * 4 - 3)]


def _pack(title: str, lines: Sequence[str], room: int) -> list[str]:
    kept = [title]
    for line in lines:
        if approx_tokens("\n".join([*kept, line])) + 1 > room:
            break
        kept.append(line)
    return kept if len(kept) > 1 else []
