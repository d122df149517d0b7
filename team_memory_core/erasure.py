"""The two levels of forgetting beyond a soft forget: restore (undo it) and purge (erase text).

Purge is for data-protection requests: the memory's text, tags, source and vector are erased
from its row, the text of its history events is cleared, and the Temporal histories holding
its text are destroyed: its ingestion workflow's (the redacted text of the save) and, for a
memory distilled from a Claude Code session, that capture session's (the hook text). Their
payload keys are deleted in the same transaction (crypto-shredding: unreadable at once), then
the executions are deleted from Temporal; a memory whose workflow the outbox relay has not
started yet loses its outbox row (the relay holds a memory it is starting locked, so a purge
waits for that start and then deletes it). Memories folded into it as duplicates (the same
text) go with it. Ids, the content hash and timestamps stay, so links from other memories and
the audit trail keep pointing somewhere.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from team_memory_core.capture import captured_in
from team_memory_core.contract import capture_workflow_id, ingest_workflow_id
from team_memory_core.models.memories import HistoryEvent, MemoryStatus
from team_memory_core.rules.consolidation import write_local_manifesto
from team_memory_core.rules.redaction import redact
from team_memory_core.settings import Settings
from team_memory_core.store import (
    anchors,
    consolidation,
    history,
    memories,
    outbox,
    proposals,
    sharing,
)
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.memories import PurgeMember
from team_memory_core.store.pool import beyond_member, tenant_tx
from team_memory_core.temporal import keyring_of


class MemoryNotFound(LookupError):
    pass


class HistoryNotDeleted(RuntimeError):
    """The database is erased but a workflow history could not be deleted: purge again."""


class Actor(BaseModel):
    """Who asks, for the audit trail: a key (MCP) or an operator (CLI)."""

    tenant_id: UUID
    tenant_name: str
    name: str
    key_id: UUID | None = None
    # A project-bound key reaches only these projects (None: the whole tenant).
    projects: list[str] | None = None
    # A member's key reaches the shared memories and its own personal ones (None: operators).
    member_id: UUID | None = None


class PurgeReport(BaseModel):
    id: UUID
    purged: list[UUID]
    events_erased: int
    workflows_deleted: list[str]
    keys_shredded: list[str] = []
    still_similar_to: UUID | None = None


async def restore(pool: asyncpg.Pool, actor: Actor, memory_id: UUID) -> MemoryStatus:
    """Bring a soft-forgotten memory back (a purged one cannot come back)."""
    async with tenant_tx(pool, actor.tenant_id, actor.projects, actor.member_id) as conn:
        status = await memories.restore(conn, memory_id)
        if status is None:
            raise MemoryNotFound(f"no forgotten, unpurged memory {memory_id}")
        await history.insert_event(conn, tenant_id=actor.tenant_id, memory_id=memory_id,
                                   event=HistoryEvent.RESTORED, detail={"actor": actor.name})
        await insert_audit(conn, tenant_id=actor.tenant_id, key_id=actor.key_id,
                           actor=actor.name, action="restore", target=str(memory_id),
                           outcome="ok")
    return status


async def purge(
    pool: asyncpg.Pool, temporal: Client, settings: Settings, actor: Actor, memory_id: UUID,
    reason: str,
) -> PurgeReport:
    """Erase a memory's text everywhere; idempotent (purging again retries Temporal)."""
    reason = redact(reason).text  # kept in history and the audit trail
    keyring = keyring_of(temporal)
    async with tenant_tx(pool, actor.tenant_id, actor.projects, actor.member_id) as conn:
        family = await memories.purge_family(conn, memory_id)
        if not family or family[0].id != memory_id:
            raise MemoryNotFound(f"no memory {memory_id}")
        ids = [member.id for member in family]
        workflows = _histories(actor.tenant_name, family)
        await memories.erase_memories(conn, ids)
        await anchors.erase_anchors(conn, ids)  # a path can say more than it should
        # A workflow not started yet never will be: nothing is left to start it with.
        await outbox.remove(conn, ids)
        erased = await history.erase_event_text(conn, ids)
        shredded = await keyring.shred(conn, workflows)
        async with beyond_member(conn, actor.member_id):
            await proposals.erase_proposal_text(conn, ids)
            await sharing.withdraw(conn, ids, "withdrawn: the memory was purged")
        for project in sorted({member.project for member in family}):
            # The manifesto may quote the text: rewritten without it, in this transaction.
            if await consolidation.manifesto(conn, project) is not None:
                await write_local_manifesto(conn, actor.tenant_id, project, settings)
        await history.insert_event(conn, tenant_id=actor.tenant_id, memory_id=memory_id,
                                   event=HistoryEvent.PURGED, reason=reason,
                                   detail={"actor": actor.name, "purged": ids})
    keyring.forget(workflows)
    report = PurgeReport(id=memory_id, purged=ids, events_erased=erased,
                         workflows_deleted=workflows, keys_shredded=shredded,
                         still_similar_to=family[0].duplicate_of)
    failed = await _delete_workflows(temporal, workflows)
    async with tenant_tx(pool, actor.tenant_id, actor.projects, actor.member_id) as conn:
        await insert_audit(
            conn, tenant_id=actor.tenant_id, key_id=actor.key_id, actor=actor.name,
            action="purge", target=str(memory_id), outcome="failed" if failed else "ok",
            detail={"reason": reason, **report.model_dump(mode="json"), "failed": failed},
        )
    if failed:
        raise HistoryNotDeleted(
            f"memory {memory_id} is erased from the database, but the workflow engine "
            f"(Temporal) did not delete {', '.join(failed)}; purge again once it answers "
            "(retry in a few seconds)"
        )
    return report


def _histories(tenant: str, family: list[PurgeMember]) -> list[str]:
    """The workflows whose history holds the family's text: each memory's ingestion, and the
    capture session a captured one was distilled from (the session's other hook text goes with
    it; the memories distilled from it stay)."""
    ingestions = [ingest_workflow_id(tenant, member.project, member.content_hash,
                                     member.generation, member.private_to)
                  for member in family]
    # A session's workflow is its key's: the captured memory's author is that key.
    sessions = {(member.created_by, session) for member in family
                if (session := captured_in(member.source))}
    return ingestions + sorted(capture_workflow_id(tenant, key_id, session)
                               for key_id, session in sessions)


async def _delete_workflows(temporal: Client, workflow_ids: list[str]) -> list[str]:
    """Delete each workflow execution (a running one is terminated first); returns failures."""
    failed = []
    for workflow_id in workflow_ids:
        request = DeleteWorkflowExecutionRequest(
            namespace=temporal.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        )
        try:
            await temporal.workflow_service.delete_workflow_execution(request)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                failed.append(workflow_id)
    return failed
