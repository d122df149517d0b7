"""What the Claude Code hook endpoints do: accept captured events, assemble session context.

Accepting an event = redact it and signal it to the session's SessionObservations workflow
(signal-with-start: the first event starts it). No model is called here. The session-start
context is assembled from the database under a token budget (no LLM call either).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from mcp_server.errors import Dependency, Forbidden, translates_outages, waiting_at_most
from mcp_server.file_states import FileStates, Report
from mcp_server.memories import MemoryService
from mcp_server.validation import TIME_ARGUMENT, check_text, check_time, file_states
from team_memory_core.capture import (
    CaptureEvent,
    CaptureSession,
)
from team_memory_core.contract import (
    CAPTURE_SIGNAL,
    CAPTURE_WORKFLOW,
    NO_KEY,
    capture_workflow_id,
    scope_attributes,
)
from team_memory_core.expiring_cache import ExpiringCache
from team_memory_core.hook_protocol import (
    CHECK_MAX,
    EVENTS_PER_REQUEST_MAX,
    FILE_MAX_CHARS,
    FILES_MAX,
    KEY_MAX_CHARS,
    PROJECT_MAX_CHARS,
    SESSION_ID_MAX_CHARS,
    SOURCE_MAX_CHARS,
    STATES_MAX,
    SUMMARY_MAX_CHARS,
    SUMMARY_RECEIVED_MAX_CHARS,
    TOOL_MAX_CHARS,
    EventKind,
)
from team_memory_core.models.anchors import Freshness
from team_memory_core.models.memories import Memory
from team_memory_core.models.principal import Principal
from team_memory_core.rules.framing import QUOTED_NOTE, quoted_memory
from team_memory_core.rules.redaction import redact
from team_memory_core.rules.text import approx_tokens, one_line
from team_memory_core.store.capture import count_capture_received, ensure_capture_session
from team_memory_core.store.pool import principal_tx
from team_memory_core.temporal import keyring_of

NO_KEY_NOTE = ("capture is off: no ANTHROPIC_API_KEY, so only explicit memories "
               "(save_memory) are kept; hook events are only counted")
_SIGNAL_CONCURRENCY = 16
_SESSION_ROW_KEPT_S = 6 * 3600
# Temporal's client retries an unreachable server for about 10 s: past this, the events are
# answered "retry" (the hook keeps them in its spool) instead of holding the request.
TEMPORAL_WAIT_S = 5
_NOT_ACCEPTED = "the events were not confirmed"
# A reported file state: [repository-relative path, git blob hash or null when missing].
ReportedStates = list[tuple[str, str | None]]


class HookEvent(BaseModel):
    """An event record as a hook sends it (before redaction)."""

    key: str = Field(min_length=1, max_length=KEY_MAX_CHARS)
    session_id: str = Field(min_length=1, max_length=SESSION_ID_MAX_CHARS)
    kind: EventKind
    project: str = Field(min_length=1, max_length=PROJECT_MAX_CHARS)
    tool: str | None = Field(default=None, max_length=TOOL_MAX_CHARS)
    files: list[str] = Field(default_factory=list, max_length=FILES_MAX)
    summary: str = Field(default="", max_length=SUMMARY_RECEIVED_MAX_CHARS)
    at: Annotated[datetime, TIME_ARGUMENT]
    # The states of the files this tool call wrote, cited or (Bash) changed: never contents.
    states: ReportedStates = Field(default_factory=list, max_length=STATES_MAX)

    # The same checks as the tools' arguments: text without NUL bytes or lone surrogates,
    # times within 1970-2999.
    @field_validator("key", "session_id", "project", "tool", "summary")
    @classmethod
    def _text(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_text(value, str(info.field_name))

    @field_validator("files")
    @classmethod
    def _files(cls, value: list[str]) -> list[str]:
        return [check_text(path, "files") for path in value]


class HookEvents(BaseModel):
    events: list[HookEvent] = Field(min_length=1, max_length=EVENTS_PER_REQUEST_MAX)


class ContextRequest(BaseModel):
    session_id: str = Field(default="", max_length=SESSION_ID_MAX_CHARS)
    project: str = Field(min_length=1, max_length=PROJECT_MAX_CHARS)
    source: str | None = Field(default=None, max_length=SOURCE_MAX_CHARS)
    # The hooks were installed with --self-capture: the session's Claude records decisions.
    self_capture: bool = False
    # The states of the project's anchored files in this working tree (docs/freshness.md),
    # at this time of the hook's clock; final: the answer to the server's ``check``.
    states: ReportedStates = Field(default_factory=list, max_length=STATES_MAX + CHECK_MAX)
    at: datetime | None = None
    final: bool = False

    @field_validator("session_id", "project", "source")
    @classmethod
    def _text(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_text(value, str(info.field_name))

    @field_validator("at")
    @classmethod
    def _time(cls, value: datetime | None) -> datetime | None:
        return check_time(value, "at")


@dataclass(frozen=True)
class SessionContext:
    """The context to inject; the files the hook should hash and send again (``check``);
    the project's anchored files, which the hook keeps re-checking."""

    text: str
    check: list[str]
    anchors: list[str]


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
        key=event.key, session_id=event.session_id, kind=event.kind,
        tool=None if event.tool is None else _clean(event.tool, TOOL_MAX_CHARS),
        files=[_clean(f, FILE_MAX_CHARS) for f in event.files if f.strip()],
        summary=_clean(event.summary, SUMMARY_MAX_CHARS), at=event.at,
    )


@dataclass
class CaptureService:
    memory: MemoryService
    _semaphore: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(_SIGNAL_CONCURRENCY))
    files: FileStates = field(init=False)
    # Sessions whose row exists (key id, session id): one insert per session and process.
    _opened: ExpiringCache[tuple[UUID, str], bool] = field(
        default_factory=lambda: ExpiringCache(seconds=_SESSION_ROW_KEPT_S, size=10_000))

    def __post_init__(self) -> None:
        self.files = FileStates(self.memory.pool)

    @property
    def enabled(self) -> bool:
        return self.memory.settings.anthropic_api_key is not None

    @property
    def temporal(self) -> Client:
        return self.memory.temporal

    def project_for(self, principal: Principal, project: str) -> str:
        """The hook's project (the repository the session runs in) is the caller's workspace:
        the key's own project wins, as for every tool call."""
        workspace = principal.model_copy(update={"workspace_project": project})
        return self.memory.resolve_project(workspace, None)

    @translates_outages(_NOT_ACCEPTED)
    async def accept(self, principal: Principal, batch: HookEvents) -> Accepted:
        if principal.read_only:
            raise Forbidden("this API key is read-only")
        projects = [self.project_for(principal, e.project) for e in batch.events]
        await self.files.apply(principal, [
            Report(project, e.session_id, file_states(e.states), e.at)
            for project, e in zip(projects, batch.events, strict=True)])
        events = [(project, clean_event(e)) for project, e in zip(projects, batch.events,
                                                                  strict=True)
                  if e.kind != EventKind.FILES]
        if not events:  # file states only: nothing to distill or count
            return Accepted(len(batch.events), self.enabled, None)
        if not self.enabled:
            await self._count_only(principal, events)
            return Accepted(len(batch.events), False, NO_KEY_NOTE)
        await self._open_sessions(principal, events)
        keyring = keyring_of(self.temporal)
        for session_id in sorted({event.session_id for _, event in events}):
            await keyring.prepare(principal.tenant_id,
                                  capture_workflow_id(principal.tenant_name,
                                                      principal.key_id, session_id))
        async with waiting_at_most(TEMPORAL_WAIT_S, Dependency.TEMPORAL, _NOT_ACCEPTED), \
                asyncio.TaskGroup() as signals:
            for project, event in events:
                signals.create_task(self._signal(principal, project, event))
        return Accepted(len(batch.events), True, None)

    async def _open_sessions(self, principal: Principal,
                             events: Sequence[tuple[str, CaptureEvent]]) -> None:
        """The rows of sessions this process has not seen yet, before their first signal:
        the codec endpoint decodes a session's hook text for the keys of the member whose
        key the row names (mcp_server/codec.py), from its first event on, not from its
        first distillation."""
        owner = principal.key_id or NO_KEY
        new = {event.session_id: project for project, event in events
               if self._opened.get((owner, event.session_id)) is None}
        if not new:
            return
        async with principal_tx(self.memory.pool, principal) as conn:
            for session_id, project in sorted(new.items()):
                await ensure_capture_session(conn, principal.tenant_id, owner, session_id,
                                             project)
        for session_id in new:
            self._opened.put((owner, session_id), True)

    async def _count_only(self, principal: Principal,
                          events: Sequence[tuple[str, CaptureEvent]]) -> None:
        async with principal_tx(self.memory.pool, principal) as conn:
            for project, event in events:
                await count_capture_received(
                    conn, principal.tenant_id, principal.key_id or NO_KEY, event.session_id,
                    project, 1, 1, "no ANTHROPIC_API_KEY")

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
                id=capture_workflow_id(principal.tenant_name, principal.key_id,
                                       event.session_id),
                task_queue=settings.task_queue,
                start_signal=CAPTURE_SIGNAL, start_signal_args=[event],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=scope_attributes(principal.tenant_name, project),
            )

    # --- session-start context --------------------------------------------------------------

    async def session_context(self, principal: Principal, request: ContextRequest,
                              budget_tokens: int | None = None) -> SessionContext:
        """The project's manifesto, then its working set (the one working-set rule), within
        ``budget_tokens`` (TEAM_MEMORY_SESSION_CONTEXT_TOKENS). The file states the hook
        reports from the working tree are applied first, so that a memory whose files changed
        is labelled and one whose files are gone is left out."""
        budget = budget_tokens or self.memory.settings.session_context_tokens
        project = self.project_for(principal, request.project)
        scoped = principal.model_copy(update={"workspace_project": project})
        reported = file_states(request.states)
        await self.files.apply(principal, [Report(project, request.session_id or None, reported,
                                                  request.at or datetime.now(UTC))])
        manifesto = await self.memory.manifesto(scoped, None)
        frame = ContextFrame(project, [rule.text for rule in manifesto.rules],
                             self._capture_line(request.self_capture))
        current = await self.memory.working_set(
            scoped, budget_tokens=max(0, budget - frame.tokens(budget)),
            text_of=lambda memory: memory_line(memory) + "\n")
        seen = {state.path for state in reported}
        unchecked = [] if request.final else list(dict.fromkeys(
            a.path for m in current.memories for a in m.anchors if a.path not in seen))
        return SessionContext(frame.render(current.memories, budget), unchecked[:CHECK_MAX],
                              await self.files.anchored_paths(principal, project))

    def _capture_line(self, self_capture: bool) -> str:
        if self.enabled:
            return ("Capture: on. Tool use in this session is distilled into team memories "
                    "by Claude Haiku (secrets redacted, <private> spans dropped).")
        if self_capture:
            return ("Capture: by you. At the end of a turn that changed the repository you "
                    "will be asked to save its decisions with save_memory.")
        return f"Capture: off. {NO_KEY_NOTE[len('capture is off: '):]}."


def memory_line(memory: Memory) -> str:
    """One working-set entry of the session context: the memory in full, on one line, quoted
    with its provenance; for a memory whose files changed since it was saved, which ones
    (check them first)."""
    return quoted_memory(memory, one_line(memory.content), short_id=True, one_line=True,
                         files_changed_since_saved=_changed_files(memory))


def _changed_files(memory: Memory, shown: int = 3) -> str | None:
    if memory.freshness != Freshness.CHANGED:
        return None
    moved = [a.path for a in memory.anchors if a.freshness != Freshness.FRESH]
    more = f" and {len(moved) - shown} more" if len(moved) > shown else ""
    return f"{', '.join(moved[:shown])}{more}"


@dataclass(frozen=True)
class ContextFrame:
    """Everything of the session context but the working set: its cost comes first."""

    project: str
    rules: Sequence[str]
    capture_line: str

    def _head(self) -> list[str]:
        return [f"# Team Memory for {self.project}", QUOTED_NOTE]

    def _tail(self) -> list[str]:
        return ["", self.capture_line,
                "Use search_memory for more; save_memory for decisions the team should keep."]

    def _manifesto(self, room: int) -> list[str]:
        lines = ["## Manifesto (the team's rules, most important first)"]
        for number, rule in enumerate(self.rules, start=1):
            line = f"{number}. {' '.join(rule.split())}"
            if approx_tokens("\n".join([*lines, line])) > room:
                break
            lines.append(line)
        return ["", *lines] if len(lines) > 1 else []

    def _fixed(self, budget: int) -> list[str]:
        base = self._head() + self._tail()
        return self._manifesto(budget - approx_tokens("\n".join(base)) - 1)

    def tokens(self, budget: int) -> int:
        """What the head, the manifesto, the tail and the working set's title cost."""
        fixed = [*self._head(), *self._fixed(budget), "", WORKING_SET_TITLE, *self._tail()]
        return approx_tokens("\n".join(fixed)) + 1

    def render(self, memories: Sequence[Memory], budget: int) -> str:
        body = self._fixed(budget)
        if memories:
            body += ["", WORKING_SET_TITLE, *(memory_line(m) for m in memories)]
        if not body:
            body = ["", "No memories for this project yet."]
        text = "\n".join(self._head() + body + self._tail())
        # Only a budget smaller than the frame itself can overflow: cut, never exceed.
        return text if approx_tokens(text) <= budget else text[:max(0, budget * 4 - 3)]


WORKING_SET_TITLE = "## Working set (in full, most relevant first)"
