"""Capture from Claude Code hooks: the records hooks send and what the session workflow carries.

A hook sends a compact *event record* (tool, files touched, a short summary; never whole file
contents). The server redacts it and signals it to one ``SessionObservations`` workflow per
session; that workflow batches events and has them distilled into typed observations, which
are saved through the ordinary ingestion path (``IngestMemory``).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from team_memory_core.contract import NO_KEY
from team_memory_core.hook_protocol import (
    FILES_MAX,
    KEY_MAX_CHARS,
    SESSION_ID_MAX_CHARS,
    SUMMARY_MAX_CHARS,
    TOOL_MAX_CHARS,
    EventKind,
)
from team_memory_core.models.memories import IngestInput
from team_memory_core.models.principal import Principal

CAPTURE_SOURCE_PREFIX = "claude-code:"


class CaptureEvent(BaseModel):
    """One hook event as it enters the workflow: already truncated and redacted."""

    key: str = Field(min_length=1, max_length=KEY_MAX_CHARS)
    session_id: str = Field(min_length=1, max_length=SESSION_ID_MAX_CHARS)
    kind: EventKind
    tool: str | None = Field(default=None, max_length=TOOL_MAX_CHARS)
    files: list[str] = Field(default_factory=list, max_length=FILES_MAX)
    summary: str = Field(default="", max_length=SUMMARY_MAX_CHARS)
    at: datetime

    @property
    def distillable(self) -> bool:
        return bool(self.summary.strip()) and self.kind is not EventKind.SESSION_END


class CaptureSession(BaseModel):
    """Input of one SessionObservations run (and of its continue-as-new successors)."""

    tenant_id: UUID
    tenant_name: str
    key_id: UUID | None
    project: str
    session_id: str
    batch_events: int = Field(ge=1)
    idle_seconds: float = Field(gt=0)
    pending: list[CaptureEvent] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)

    @classmethod
    def start(cls, principal: Principal, project: str, session_id: str, *, batch_events: int,
              idle_seconds: float) -> CaptureSession:
        return cls(tenant_id=principal.tenant_id, tenant_name=principal.tenant_name,
                   key_id=principal.key_id, project=project, session_id=session_id,
                   batch_events=batch_events, idle_seconds=idle_seconds)


class DistillRequest(BaseModel):
    tenant_id: UUID
    key_id: UUID | None
    project: str
    session_id: str
    events: list[CaptureEvent]

    @property
    def owner(self) -> UUID:
        """The key whose session this is (sessions of two keys never mix)."""
        return self.key_id or NO_KEY


class DistillResult(BaseModel):
    """Observations whose pending rows were created; the workflow starts their ingestion."""

    items: list[IngestInput] = Field(default_factory=list)
    skipped_reason: str | None = None


class SessionSummary(BaseModel):
    session_id: str
    batches: int
    observations: int


def capture_source(session_id: str) -> str:
    """The source of a memory distilled from a session (purge finds the session by it)."""
    return f"{CAPTURE_SOURCE_PREFIX}{session_id}"[:200]


def captured_in(source: str | None) -> str | None:
    """The session id a memory was distilled in, or None if it was not captured."""
    if source is None or not source.startswith(CAPTURE_SOURCE_PREFIX):
        return None
    return source.removeprefix(CAPTURE_SOURCE_PREFIX) or None
