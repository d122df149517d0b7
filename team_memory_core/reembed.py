"""Starting and watching the re-embed (what `team-memory reembed` does): one ReembedMemories
workflow per database at a time, started by its contract name."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from team_memory_core.contract import (
    REEMBED_WORKFLOW,
    reembed_workflow_id,
)
from team_memory_core.embedder import EmbeddingModel
from team_memory_core.models.reembed import (
    MEMO_PROGRESS,
    ModelSpec,
    ReembedInput,
    ReembedProgress,
)
from team_memory_core.settings import Settings


async def start_reembed(client: Client, settings: Settings, model: EmbeddingModel, *,
                        page_size: int = 200) -> WorkflowHandle[object, ReembedProgress]:
    """Start the re-embed to ``model`` (a finished run's id may be reused; a running one is
    not replaced: WorkflowAlreadyStartedError)."""
    return await client.start_workflow(
        REEMBED_WORKFLOW, ReembedInput(model=ModelSpec.of(model), page_size=page_size),
        id=reembed_workflow_id(settings.task_queue), task_queue=settings.task_queue,
        result_type=ReembedProgress,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        memo={"phase": "starting", "model": str(model)},
    )


@dataclass(frozen=True)
class ReembedStatus:
    running: bool
    status: str  # Temporal's: RUNNING, COMPLETED, FAILED...
    progress: ReembedProgress | None  # None: not reported yet


async def reembed_status(client: Client, settings: Settings) -> ReembedStatus | None:
    """The latest re-embed run: its Temporal status and its progress, from its memo (which
    needs no worker, as a query would). None: never run."""
    handle = client.get_workflow_handle(reembed_workflow_id(settings.task_queue),
                                        result_type=ReembedProgress)
    try:
        described = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    running = described.status == WorkflowExecutionStatus.RUNNING
    progress = await described.memo_value(MEMO_PROGRESS, None, type_hint=ReembedProgress)
    return ReembedStatus(running=running,
                         status=described.status.name if described.status else "UNKNOWN",
                         progress=progress)
