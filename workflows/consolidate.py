"""Consolidate: the nightly review of one project (started by its Temporal Schedule).

Pages through the project's active memories (continue-as-new after each page, so history
stays small however large the project), reviews each group of related memories (Claude Haiku
merges duplicates and resolves conflicts; without a key, or past the run's token budget, the
local policy folds exact and near duplicates), archives decayed memories, regenerates the
manifesto and records the run. Nothing is deleted: retired memories keep their rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar
from uuid import UUID

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.consolidate import ConsolidationActivities
    from team_memory_core.contract import CONSOLIDATE_WORKFLOW, REVIEW_CHANGED_PATCH
    from team_memory_core.models.consolidation import (
        ChangedReview,
        ChangedReviewRequest,
        ClusterOutcome,
        ClusterRequest,
        ConsolidateInput,
        ConsolidationReport,
        ManifestoOutcome,
        ManifestoRequest,
        PageRequest,
        RunRequest,
    )
    from workflows.retry import DECISION_RETRY, LOCAL_STEP_FAILED, STORAGE_RETRY, failure_cause

_STEP = timedelta(minutes=2)
_STEP_TOTAL = timedelta(hours=2)


@workflow.defn(name=CONSOLIDATE_WORKFLOW)
class Consolidate:
    @workflow.run
    async def run(self, job: ConsolidateInput) -> ConsolidationReport:
        report = job.report or await self._start(job)
        page = await workflow.execute_activity_method(
            ConsolidationActivities.find_clusters,
            PageRequest(tenant_id=report.tenant_id, project=report.project, cursor=job.cursor,
                        page_size=report.page_size),
            start_to_close_timeout=_STEP, schedule_to_close_timeout=_STEP_TOTAL,
            retry_policy=STORAGE_RETRY,
        )
        report = report.model_copy(update={"pages": report.pages + 1})
        for ids in page.clusters:
            report = report.plus(await self._review(report, ids))
        if page.next_cursor is not None:
            workflow.continue_as_new(job.model_copy(update={"cursor": page.next_cursor,
                                                            "report": report}))
        archived = await workflow.execute_activity_method(
            ConsolidationActivities.archive_stale, report, start_to_close_timeout=_STEP,
            schedule_to_close_timeout=_STEP_TOTAL, retry_policy=STORAGE_RETRY,
        )
        report = report.model_copy(update={"archived": archived})
        if workflow.patched(REVIEW_CHANGED_PATCH):
            report = _with_changed(report, await self._changed(report))
        report = _with_manifesto(report, await self._manifesto(report))
        await workflow.execute_activity_method(
            ConsolidationActivities.finish_consolidation, report, start_to_close_timeout=_STEP,
            schedule_to_close_timeout=_STEP_TOTAL, retry_policy=STORAGE_RETRY,
        )
        return report

    async def _start(self, job: ConsolidateInput) -> ConsolidationReport:
        info = workflow.info()
        return await workflow.execute_activity_method(
            ConsolidationActivities.start_consolidation,
            RunRequest(run_id=UUID(info.run_id), workflow_id=info.workflow_id, tenant=job.tenant,
                       project=job.project, page_size=job.page_size,
                       token_budget=job.token_budget),
            start_to_close_timeout=_STEP, schedule_to_close_timeout=_STEP_TOTAL,
            retry_policy=STORAGE_RETRY,
        )

    async def _review(self, report: ConsolidationReport, ids: list[UUID]) -> ClusterOutcome:
        request = ClusterRequest(run_id=report.run_id, tenant_id=report.tenant_id,
                                 project=report.project, ids=ids, tokens_left=report.tokens_left)
        return await _judged(ConsolidationActivities.review_cluster, request)

    async def _changed(self, report: ConsolidationReport) -> ChangedReview:
        request = ChangedReviewRequest(run_id=report.run_id, tenant_id=report.tenant_id,
                                       project=report.project, tokens_left=report.tokens_left)
        return await _judged(ConsolidationActivities.review_changed_memories, request)

    async def _manifesto(self, report: ConsolidationReport) -> ManifestoOutcome:
        request = ManifestoRequest(run_id=report.run_id, tenant_id=report.tenant_id,
                                   project=report.project, tokens_left=report.tokens_left)
        return await _judged(ConsolidationActivities.refresh_manifesto, request)


_Request = TypeVar("_Request", ClusterRequest, ChangedReviewRequest, ManifestoRequest)
_Outcome = TypeVar("_Outcome", ClusterOutcome, ChangedReview, ManifestoOutcome)


async def _judged(step: Callable[[ConsolidationActivities, _Request], Awaitable[_Outcome]],
                  request: _Request) -> _Outcome:
    """A step that may ask the model. When the model is unavailable or answers badly, the
    same step again without it (the local policy), counting what the failure cost."""
    try:
        return await _step(step, request, DECISION_RETRY)
    except LOCAL_STEP_FAILED as error:
        local = await _step(step, request.model_copy(update={"allow_llm": False}),
                            STORAGE_RETRY)
        return local.model_copy(update=_billed(error))


async def _step(step: Callable[[ConsolidationActivities, _Request], Awaitable[_Outcome]],
                request: _Request, retry: RetryPolicy) -> _Outcome:
    return await workflow.execute_activity_method(
        step, request, start_to_close_timeout=_STEP, schedule_to_close_timeout=_STEP_TOTAL,
        retry_policy=retry,
    )


def _billed(error: BaseException) -> dict[str, int]:
    """The failure counted in the report, with the tokens a malformed reply was billed."""
    spent: dict[str, int] = {"llm_failures": 1}
    cause = failure_cause(error)
    if isinstance(cause, ApplicationError) and cause.details:
        usage = cause.details[0]
        if isinstance(usage, dict):
            spent["llm_calls"] = 1
            spent["input_tokens"] = int(usage.get("input_tokens", 0))
            spent["output_tokens"] = int(usage.get("output_tokens", 0))
    return spent


def _with_changed(report: ConsolidationReport, outcome: ChangedReview) -> ConsolidationReport:
    return report.model_copy(update={
        "changed_files": outcome,
        **report.spend_plus(outcome),
    })


def _with_manifesto(report: ConsolidationReport, outcome: ManifestoOutcome) -> ConsolidationReport:
    return report.model_copy(update={
        "manifesto": outcome.status,
        "manifesto_policy": outcome.policy,
        "manifesto_rules": outcome.rules,
        **report.spend_plus(outcome),
    })
