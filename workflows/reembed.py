"""ReembedMemories: every memory embedded with another model while search serves from the
current one, then one switch (docs/retrieval.md, "Changing the embedding model").

Pass after pass over every tenant's memories, page by page (id order), the new model's vectors
go to a column of their own; a pass that wrote few vectors (only what was saved during the
pass before) is followed by the switch, which writes the last missing vectors and renames the
columns in one transaction under the table lock. Then the old vectors are cleared out of the
rows, page by page, and their column dropped.

Durable and resumable: the state (phase, tenant, cursor, counts) is the workflow's, carried
across continue-as-new every few pages so the history stays small; a worker that dies mid-page
is replaced and the page is retried, the pages before it are not redone. The ``progress`` query
answers where it stands; the memo shows the same in the Temporal UI's list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.reembed import ReembedActivities
    from team_memory_core.contract import REEMBED_PROGRESS_QUERY, REEMBED_WORKFLOW
    from team_memory_core.models.reembed import (
        MEMO_PROGRESS,
        BeginRequest,
        PageRequest,
        PassRequest,
        Phase,
        ReclaimRequest,
        ReembedInput,
        ReembedProgress,
        ReembedState,
        SwitchRequest,
    )
    from workflows.retry import STORAGE_RETRY

_STEP = timedelta(minutes=10)  # a page embedded by an API model can take a while
_HEARTBEAT = timedelta(seconds=30)  # a worker that died mid-page: retried after this
# Steps per run before continue-as-new: each is an activity and a memo update in the history.
STEPS_PER_RUN = 100


@workflow.defn(name=REEMBED_WORKFLOW)
class ReembedMemories:
    @workflow.init
    def __init__(self, job: ReembedInput) -> None:
        self._progress = ReembedProgress.of(
            job, job.state or ReembedState(generation=0, phase=Phase.STARTING))
        self._state: ReembedState | None = job.state

    @workflow.query(name=REEMBED_PROGRESS_QUERY)
    def progress(self) -> ReembedProgress:
        return self._progress

    @workflow.run
    async def run(self, job: ReembedInput) -> ReembedProgress:
        try:
            state = job.state or await self._begin(job)
            self._show(job, state)
            for _ in range(STEPS_PER_RUN):
                if state.phase is Phase.DONE:
                    return ReembedProgress.of(job, state)
                state = await self._step(job, state)
                self._show(job, state)
                if workflow.info().is_continue_as_new_suggested():
                    break
        except BaseException as error:
            # Cancelled: at an activity, it arrives as the activity's cancellation.
            if is_cancelled_exception(error):
                await self._abandon()
            raise
        if state.phase is Phase.DONE:
            return ReembedProgress.of(job, state)
        workflow.continue_as_new(job.model_copy(update={"state": state}))

    async def _abandon(self) -> None:
        """Cancelled (`team-memory reembed cancel`): before the switch, the new column goes
        and search never noticed; after it, the new model stays (the old vectors' column is
        dropped by the next re-embed)."""
        if self._state is not None and self._state.phase in (Phase.EMBEDDING,
                                                              Phase.SWITCHING):
            await _call(ReembedActivities.abandon_reembed, self._state.generation)

    def _show(self, job: ReembedInput, state: ReembedState) -> None:
        """The progress, for the query and in the memo (the Temporal UI shows it; `reembed
        status` reads it, with or without a worker running)."""
        self._state = state
        progress = ReembedProgress.of(job, state)
        if progress != self._progress:
            workflow.upsert_memo({
                "phase": state.phase.value, "progress": f"{state.embedded}/{state.total}",
                "model": f"{job.model.provider}:{job.model.name} ({job.model.dim})",
                MEMO_PROGRESS: progress.model_dump(mode="json")})
        self._progress = progress

    async def _begin(self, job: ReembedInput) -> ReembedState:
        state = await _call(ReembedActivities.begin_reembed, BeginRequest(
            model=job.model, workflow_id=workflow.info().workflow_id))
        return await self._new_pass(state)

    async def _step(self, job: ReembedInput, state: ReembedState) -> ReembedState:
        if state.phase is Phase.EMBEDDING:
            return await self._embed(job, state)
        if state.phase is Phase.SWITCHING:
            return await self._switch(job, state)
        return await self._reclaim(job, state)

    async def _new_pass(self, state: ReembedState) -> ReembedState:
        start = await _call(ReembedActivities.start_reembed_pass, PassRequest(count=True))
        return state.model_copy(update={
            "tenants": start.tenants, "tenant_index": 0, "cursor": None,
            "passes": state.passes + 1, "pass_embedded": 0, "embedded": start.embedded,
            "total": start.total})

    async def _embed(self, job: ReembedInput, state: ReembedState) -> ReembedState:
        tenant = state.tenant
        if tenant is None:  # the pass is over
            if state.pass_embedded <= job.switch_max_missing:
                return state.model_copy(update={"phase": Phase.SWITCHING})
            return await self._new_pass(state)
        page = await _call(ReembedActivities.reembed_page, PageRequest(
            model=job.model, tenant_id=tenant, cursor=state.cursor, page_size=job.page_size))
        return state.model_copy(update={
            "cursor": page.next_cursor,
            "tenant_index": state.tenant_index + (page.next_cursor is None),
            "pass_embedded": state.pass_embedded + page.written,
            "embedded": state.embedded + page.written, "pages": state.pages + 1})

    async def _switch(self, job: ReembedInput, state: ReembedState) -> ReembedState:
        result = await _call(ReembedActivities.switch_embedding_model, SwitchRequest(
            model=job.model, generation=state.generation, max_missing=job.switch_max_missing))
        state = state.model_copy(update={"switch_attempts": state.switch_attempts + 1})
        if not result.switched:  # saves came faster than the last pass: one more pass
            return await self._new_pass(state.model_copy(update={"phase": Phase.EMBEDDING}))
        start = await _call(ReembedActivities.start_reembed_pass, PassRequest(count=False))
        return state.model_copy(update={
            "phase": Phase.RECLAIMING, "tenants": start.tenants, "tenant_index": 0,
            "cursor": None, "embedded": state.embedded + result.missing})

    async def _reclaim(self, job: ReembedInput, state: ReembedState) -> ReembedState:
        tenant = state.tenant
        if tenant is None:
            await workflow.execute_activity_method(
                ReembedActivities.finish_reembed, start_to_close_timeout=_STEP,
                heartbeat_timeout=_HEARTBEAT, retry_policy=STORAGE_RETRY)
            return state.model_copy(update={"phase": Phase.DONE})
        cursor = await _call(ReembedActivities.reclaim_retired_vectors, ReclaimRequest(
            tenant_id=tenant, cursor=state.cursor, page_size=job.page_size))
        return state.model_copy(update={
            "cursor": cursor, "tenant_index": state.tenant_index + (cursor is None),
            "pages": state.pages + 1})


_Request = TypeVar("_Request")
_Result = TypeVar("_Result")


async def _call(step: Callable[[ReembedActivities, _Request], Awaitable[_Result]],
                request: _Request) -> _Result:
    return await workflow.execute_activity_method(
        step, request, start_to_close_timeout=_STEP, heartbeat_timeout=_HEARTBEAT,
        retry_policy=STORAGE_RETRY)
