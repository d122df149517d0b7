"""IngestMemory: one durable workflow per saved memory (embed -> decide -> commit)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.ingest import IngestActivities
    from team_memory.models import Decision, DecisionKind, IngestInput, IngestResult
    from team_memory.temporal import DECISION_KEY

# Programming errors fail the workflow at once (visible as a failed ingestion, resettable
# after a fix) instead of retrying forever; the memory row stays, searchable, meanwhile.
BUG_ERRORS = ["ValidationError", "TypeError", "AttributeError", "NameError", "KeyError"]
# Database and model steps: retry until the dependency is back (nothing acknowledged is lost).
STORAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=BUG_ERRORS,
)
# The LLM decision: a bounded number of tries, then the memory is kept as ADD.
DECISION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["MalformedLLMOutput", *BUG_ERRORS],
)


@workflow.defn(name="IngestMemory")
class IngestMemory:
    @workflow.run
    async def run(self, item: IngestInput) -> IngestResult:
        # Local activities: the steps are short, and skipping a task-queue round trip per
        # step is what makes one-workflow-per-memory fast enough.
        await workflow.execute_local_activity_method(
            IngestActivities.embed_memory, item, start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=1), retry_policy=STORAGE_RETRY,
        )
        decision = await self._decide(item)
        result = await workflow.execute_local_activity_method(
            IngestActivities.commit_memory, args=[item, decision],
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=1), retry_policy=STORAGE_RETRY,
        )
        workflow.upsert_search_attributes([DECISION_KEY.value_set(decision.kind.value)])
        return result

    async def _decide(self, item: IngestInput) -> Decision:
        try:
            return await workflow.execute_local_activity_method(
                IngestActivities.decide_memory, item,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(minutes=10), retry_policy=DECISION_RETRY,
            )
        # A local activity's last failure arrives as the activity's own ApplicationError (or
        # a TimeoutError), not wrapped in an ActivityError as a regular activity's would be.
        except (ActivityError, ApplicationError, TimeoutError) as error:
            cause = error.cause if isinstance(error, ActivityError) and error.cause else error
            # Keep the memory; the nightly consolidation revisits it.
            return Decision(kind=DecisionKind.ADD, policy="haiku",
                            reason=f"kept without a model decision: {cause}")
