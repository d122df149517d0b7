"""The distillation activity of SessionObservations: hook events -> typed observations.

Idempotent: events already distilled or skipped (table capture_events) are never sent to the
model again, and observations become memories through the same pending-row + IngestMemory path
as save_memory (memory ids derive from the text, so a retried batch creates nothing twice).
Token budgets per session and per tenant-day are checked before each call and recorded after.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from temporalio import activity

from activities.failures import llm_failure
from team_memory_core.anchoring import anchor_memory
from team_memory_core.capture import CaptureEvent, DistillRequest, DistillResult, capture_source
from team_memory_core.contract import DISTILL_ACTIVITY
from team_memory_core.hook_protocol import repo_path
from team_memory_core.llm.client import Distiller, LLMUnavailable, LLMUsage, MalformedLLMOutput
from team_memory_core.llm.observe import (
    Observation,
    ObservationSet,
    ObservationType,
    SessionEventLine,
    distill_events,
)
from team_memory_core.models.anchors import AnchorInput
from team_memory_core.models.memories import (
    Category,
    IngestInput,
    Origin,
    Scope,
    content_hash,
    memory_id_for,
)
from team_memory_core.rules.injection import flags_of
from team_memory_core.rules.redaction import redact
from team_memory_core.rules.sharing import ShareCause, needs_review
from team_memory_core.rules.text import approx_tokens
from team_memory_core.settings import Settings
from team_memory_core.sharing import kept_private, queue_for_review
from team_memory_core.store import capture as store
from team_memory_core.store.anchors import session_file_states
from team_memory_core.store.memories import insert_pending
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.sharing import lock_promotable, reviews_of
from team_memory_core.store.tenants import member_of_key, tenant_name
from team_memory_core.temporal_keys import Keyring

CATEGORY_OF = {
    ObservationType.DECISION: Category.ARCHITECTURE,
    ObservationType.ARCHITECTURE: Category.ARCHITECTURE,
    ObservationType.BUGFIX: Category.BUGFIX,
    ObservationType.PREFERENCE: Category.PREFERENCE,
    ObservationType.CONVENTION: Category.PREFERENCE,
    ObservationType.BUSINESS_RULE: Category.BUSINESS_RULE,
    ObservationType.FACT: Category.GENERAL,
}
# The system prompt and tool schema the model also reads, on top of the events themselves.
_PROMPT_OVERHEAD_TOKENS = 900
_OUTPUT_ALLOWANCE_TOKENS = 600


@dataclass
class CaptureActivities:
    pool: asyncpg.Pool
    settings: Settings
    keys: Keyring
    distiller: Distiller | None = None

    @activity.defn(name=DISTILL_ACTIVITY)
    async def distill_session_events(self, request: DistillRequest) -> DistillResult:
        fresh = await self._unprocessed(request)
        if not fresh:
            return DistillResult()
        reason = await self._skip_reason(request, fresh)
        if reason is not None:
            await self._record_skip(request, fresh, reason)
            return DistillResult(skipped_reason=reason)
        try:
            found, usage = await self._distill(request, fresh)
        except MalformedLLMOutput as error:
            # Billed but unusable: count the tokens, do not retry the same events forever.
            await self._record_skip(request, fresh, f"unusable model reply: {error}",
                                    usage=error.usage)
            return DistillResult(skipped_reason="unusable model reply")
        return await self._save(request, fresh, found, usage)

    async def _unprocessed(self, request: DistillRequest) -> list[CaptureEvent]:
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            await store.ensure_capture_session(conn, request.tenant_id, request.owner,
                                               request.session_id, request.project)
            done = await store.processed_event_keys(
                conn, request.owner, request.session_id, [e.key for e in request.events])
        return [e for e in request.events if e.key not in done and e.distillable]

    async def _skip_reason(self, request: DistillRequest, events: list[CaptureEvent]) -> str | None:
        if self.distiller is None:
            return "no ANTHROPIC_API_KEY on the worker: only explicit memories are kept"
        needed = (_PROMPT_OVERHEAD_TOKENS + _OUTPUT_ALLOWANCE_TOKENS
                  + sum(approx_tokens(e.model_dump_json()) for e in events))
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            session, daily = await store.capture_tokens_used(
                conn, request.owner, request.session_id, datetime.now(UTC).date())
        if session + needed > self.settings.capture_session_tokens:
            return (f"session token budget reached ({session} of "
                    f"{self.settings.capture_session_tokens} used)")
        if daily + needed > self.settings.capture_daily_tokens:
            return (f"daily token budget reached ({daily} of "
                    f"{self.settings.capture_daily_tokens} used today)")
        return None

    async def _distill(
        self, request: DistillRequest, events: list[CaptureEvent]
    ) -> tuple[ObservationSet, LLMUsage]:
        assert self.distiller is not None
        lines = [SessionEventLine(kind=e.kind.value, tool=e.tool, files=e.files,
                                  summary=e.summary) for e in events]
        try:
            return await distill_events(self.distiller, request.project, lines)
        except LLMUnavailable as error:
            # A malformed reply is not raised: the caller records it as a skip.
            raise llm_failure(error) from error

    async def _record_skip(
        self, request: DistillRequest, events: list[CaptureEvent], reason: str,
        usage: LLMUsage | None = None,
    ) -> None:
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            await store.record_capture_outcome(
                conn, tenant_id=request.tenant_id, key_id=request.owner,
                session_id=request.session_id, keys=[e.key for e in events], outcome="skipped",
                skip_reason=reason[:300])
            if usage is not None:
                await store.add_capture_usage(
                    conn, tenant_id=request.tenant_id, key_id=request.owner,
                    session_id=request.session_id, day=datetime.now(UTC).date(),
                    input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    observations=0)

    async def _save(
        self, request: DistillRequest, events: list[CaptureEvent], found: ObservationSet,
        usage: LLMUsage,
    ) -> DistillResult:
        result = DistillResult()
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            # The session's key's member is the author of what it observed.
            author = None if request.key_id is None else await member_of_key(conn,
                                                                             request.key_id)
            cited = [(item, o.files) for o in found.observations
                     if (item := self._item(request, o, events, author)) is not None]
            items = [item for item, _ in cited]
            await store.record_capture_outcome(
                conn, tenant_id=request.tenant_id, key_id=request.owner,
                session_id=request.session_id, keys=[e.key for e in events],
                outcome="distilled")
            await store.add_capture_usage(
                conn, tenant_id=request.tenant_id, key_id=request.owner,
                session_id=request.session_id, day=datetime.now(UTC).date(),
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                observations=len(items))
            reviews = await reviews_of(conn, [request.project])
            for item, files in cited:
                flags = flags_of(item.content)
                # A reviewed project, or text that looks aimed at AI agents: its author's
                # until a member approves it.
                held = needs_review(ShareCause.CAPTURE, reviews, flagged=bool(flags))
                if held:
                    if author is None:
                        continue  # no member to hold it for: not shared unreviewed
                    item = kept_private(item, author)
                if await insert_pending(conn, item, flags):
                    result.items.append(item)
                    await self._anchor(conn, request, item, files)
                    if held:
                        await self._hold(conn, request, item)
            tenant = await tenant_name(conn, request.tenant_id)
        assert tenant is not None
        # The ingestions the workflow starts next need their payload keys (committed first).
        for item in result.items:
            await self.keys.prepare(request.tenant_id, item.workflow_id(tenant))
        return result

    async def _hold(self, conn: asyncpg.Connection, request: DistillRequest,
                    item: IngestInput) -> None:
        """Queue a captured observation of a reviewed project for review."""
        memory = await lock_promotable(conn, item.memory_id)
        assert memory is not None  # inserted in this transaction
        await queue_for_review(conn, tenant_id=request.tenant_id, memory=memory,
                               scope=Scope.PROJECT, cause=ShareCause.CAPTURE,
                               key_id=request.key_id, actor="capture")

    async def _anchor(self, conn: asyncpg.Connection, request: DistillRequest,
                      item: IngestInput, files: list[str]) -> None:
        """Anchor an observation to the files it cites, each against the content this session
        last reported of it: what the observation was made from (docs/freshness.md)."""
        paths = []
        for file in files:
            with contextlib.suppress(ValueError):
                paths.append(repo_path(file))
        seen = await session_file_states(conn, request.project, request.session_id, paths)
        await anchor_memory(conn, request.tenant_id, item.memory_id, item.project,
                            [AnchorInput(path=p, blob=seen.get(p)) for p in paths])

    def _item(self, request: DistillRequest, observation: Observation,
              events: list[CaptureEvent], author: UUID | None) -> IngestInput | None:
        text = redact(observation.content).text.strip()
        if not text:
            return None
        digest = content_hash(text)
        return IngestInput(
            memory_id=memory_id_for(request.tenant_id, request.project, digest),
            tenant_id=request.tenant_id, project=request.project, content=text,
            category=CATEGORY_OF[observation.type], importance=observation.importance,
            tags=["captured", f"observation:{observation.type.value}"], content_hash=digest,
            occurred_at=max(e.at for e in events),
            source=redact(capture_source(request.session_id)).text,
            key_id=request.key_id, author_id=author, origin=Origin.CAPTURE,
            origin_session=redact(request.session_id).text,
        )
