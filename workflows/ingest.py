"""IngestMemory: one durable workflow per saved memory (embed -> decide -> commit)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.consolidate import ConsolidationActivities
    from activities.ingest import IngestActivities
    from team_memory_core.contract import DECISION_KEY, INGEST_WORKFLOW, Policy
    from team_memory_core.models.consolidation import ProjectRef
    from team_memory_core.models.decisions import Decision, DecisionKind, IngestResult
    from team_memory_core.models.memories import IngestInput
    from workflows.retry import DECISION_RETRY, LOCAL_STEP_FAILED, STORAGE_RETRY, failure_cause

# Workflows started before this patch embed, decide and commit in three steps; later ones in
# one step when the rules decide alone (two fewer activations, payload round trips and
# transactions per memory), falling back to the three steps when the model must decide.
ONE_STEP = "ingest-in-one-step"


@workflow.defn(name=INGEST_WORKFLOW)
class IngestMemory:
    @workflow.run
    async def run(self, item: IngestInput) -> IngestResult:
        # Local activities: the steps are short, and skipping a task-queue round trip per
        # step is what makes one-workflow-per-memory fast enough.
        result = None
        if workflow.patched(ONE_STEP):
            result = await workflow.execute_local_activity_method(
                IngestActivities.ingest_memory, item, start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(days=1), retry_policy=STORAGE_RETRY,
            )
        else:
            await workflow.execute_local_activity_method(
                IngestActivities.embed_memory, item, start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(days=1), retry_policy=STORAGE_RETRY,
            )
        if result is None:
            result = await self._commit(item, await self._decide(item))
        workflow.upsert_search_attributes([DECISION_KEY.value_set(result.decision.value)])
        if result.schedule_needed:
            await self._ensure_schedule(item)
        return result

    async def _commit(self, item: IngestInput, decision: Decision) -> IngestResult:
        return await workflow.execute_local_activity_method(
            IngestActivities.commit_memory, args=[item, decision],
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=1), retry_policy=STORAGE_RETRY,
        )

    async def _decide(self, item: IngestInput) -> Decision:
        try:
            return await workflow.execute_local_activity_method(
                IngestActivities.decide_memory, item,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(minutes=10), retry_policy=DECISION_RETRY,
            )
        except LOCAL_STEP_FAILED as error:
            cause = failure_cause(error)
            kind = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
            # Keep the memory; the nightly consolidation revisits it.
            return Decision(kind=DecisionKind.ADD, policy=Policy.HAIKU, needs_review=True,
                            reason=f"kept without a model decision ({kind}): {cause}")

    async def _ensure_schedule(self, item: IngestInput) -> None:
        """The project's first memory: create its nightly consolidation schedule. A failure
        here never fails the ingestion: every worker start ensures all schedules again."""
        try:
            await workflow.execute_local_activity_method(
                ConsolidationActivities.ensure_project_schedule,
                ProjectRef(tenant_id=item.tenant_id, project=item.project),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=1), retry_policy=STORAGE_RETRY,
            )
        except LOCAL_STEP_FAILED as error:
            workflow.logger.warning("consolidation schedule not created: %s",
                                    failure_cause(error))
