"""SessionObservations: one durable workflow per Claude Code session (signal-with-start).

Each hook event is a signal, de-duplicated by its key. Events are batched and distilled when a
batch fills, when a turn ends (Stop), when the session ends (SessionEnd) or after an idle
period; the observations found are ingested by IngestMemory child workflows, exactly as if
they had been saved with save_memory.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from team_memory_core.capture import (
        CaptureEvent,
        CaptureSession,
        DistillRequest,
        DistillResult,
        SessionSummary,
    )
    from team_memory_core.contract import (
        CAPTURE_SIGNAL,
        CAPTURE_WORKFLOW,
        DISTILL_ACTIVITY,
        INGEST_WORKFLOW,
        ingest_attributes,
        ingest_workflow_id,
    )
    from team_memory_core.hook_protocol import EventKind
    from team_memory_core.models.memories import IngestInput
    from workflows.retry import DISTILL_RETRY

_HISTORY_LIMIT = 8000


@workflow.defn(name=CAPTURE_WORKFLOW)
class SessionObservations:
    def __init__(self) -> None:
        self._pending: list[CaptureEvent] = []
        self._seen: set[str] = set()
        self._signals = 0
        self._flush = False
        self._ended = False

    @workflow.signal(name=CAPTURE_SIGNAL)
    def event(self, event: CaptureEvent) -> None:
        if event.key in self._seen:
            return
        self._seen.add(event.key)
        self._signals += 1
        if event.distillable:
            self._pending.append(event)
        if event.kind is EventKind.STOP:
            self._flush = True
        elif event.kind is EventKind.SESSION_END:
            self._ended = True

    @workflow.run
    async def run(self, session: CaptureSession) -> SessionSummary:
        self._pending = [*session.pending, *self._pending]
        self._seen.update(session.seen)
        summary = SessionSummary(session_id=session.session_id, batches=0, observations=0)
        while True:
            idle = await self._wait(session)
            while self._pending and (self._flush or self._ended or idle
                                     or len(self._pending) >= session.batch_events):
                batch = self._pending[:session.batch_events]
                self._pending = self._pending[session.batch_events:]
                summary.observations += await self._distill(session, batch)
                summary.batches += 1
            self._flush = False
            await workflow.wait_condition(workflow.all_handlers_finished)
            if (self._ended or idle) and not self._pending:
                return summary
            if workflow.info().get_current_history_length() > _HISTORY_LIMIT:
                workflow.continue_as_new(session.model_copy(update={
                    "pending": self._pending, "seen": sorted(self._seen)}))

    async def _wait(self, session: CaptureSession) -> bool:
        """Wait for something to do; True when the session went idle (no event meanwhile)."""
        before = self._signals
        try:
            await workflow.wait_condition(
                lambda: self._ended or self._flush
                or len(self._pending) >= session.batch_events,
                timeout=timedelta(seconds=session.idle_seconds),
            )
        except TimeoutError:
            return self._signals == before
        return False

    async def _distill(self, session: CaptureSession, batch: list[CaptureEvent]) -> int:
        result: DistillResult = await workflow.execute_activity(
            DISTILL_ACTIVITY,
            DistillRequest(tenant_id=session.tenant_id, key_id=session.key_id,
                           project=session.project, session_id=session.session_id,
                           events=batch),
            result_type=DistillResult,
            start_to_close_timeout=timedelta(minutes=2),
            schedule_to_close_timeout=timedelta(hours=6),
            retry_policy=DISTILL_RETRY,
        )
        for item in result.items:
            await self._ingest(session, item)
        return len(result.items)

    async def _ingest(self, session: CaptureSession, item: IngestInput) -> None:
        # Already started: the same text was ingested before under this id; nothing to do.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await workflow.start_child_workflow(
                INGEST_WORKFLOW, item,
                id=ingest_workflow_id(session.tenant_name, item.project, item.content_hash,
                                      item.generation, item.private_to),
                task_queue=workflow.info().task_queue,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=ingest_attributes(session.tenant_name, item.project,
                                                    item.category.value),
            )
