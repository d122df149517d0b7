"""Sharing a memory with its project or the team, the steps every path shares (a member's
promotion, a reviewer's approval, a captured observation in a reviewed project), each inside
the caller's transaction. The rule that decides whether sharing waits: rules/sharing.py."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from team_memory_core.models.anchors import AnchorInput
from team_memory_core.models.memories import (
    TENANT_WIDE_PROJECT,
    HistoryEvent,
    IngestInput,
    Scope,
    memory_id_for,
)
from team_memory_core.rules.sharing import ShareCause
from team_memory_core.store import anchors, history, sharing
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.sharing import Promotable


def kept_private(item: IngestInput, member_id: UUID) -> IngestInput:
    """``item`` as a personal memory of ``member_id`` (its id derives from the member), to be
    shared once approved."""
    return item.model_copy(update={
        "private_to": member_id,
        "memory_id": memory_id_for(item.tenant_id, item.project, item.content_hash,
                                   item.generation, member_id),
    })


def shared_copy(memory: Promotable, tenant_id: UUID, scope: Scope) -> IngestInput:
    """The shared memory a promotion creates beside the personal one: the same text and
    provenance (author, origin), in its project or, for the team, in project '*'. The key is
    the personal memory's (a captured memory's session workflow is that key's)."""
    project = TENANT_WIDE_PROJECT if scope is Scope.TEAM else memory.project
    item = IngestInput(
        memory_id=memory_id_for(tenant_id, project, memory.content_hash),
        tenant_id=tenant_id, project=project, content=memory.content,
        category=memory.category, importance=memory.importance, tags=memory.tags,
        content_hash=memory.content_hash, occurred_at=memory.occurred_at,
        source=memory.source, key_id=memory.created_by, author_id=memory.author_id,
        origin=memory.origin, origin_session=memory.origin_session,
    )
    return item


async def files_of(conn: asyncpg.Connection, memory: Promotable) -> list[AnchorInput]:
    """The files a memory cites, each against the content it was saved with."""
    found = await anchors.anchor_rows(conn, [memory.id])
    return [AnchorInput(path=row.path, blob=row.blob) for row in found]


async def queue_for_review(
    conn: asyncpg.Connection, *, tenant_id: UUID, memory: Promotable, scope: Scope,
    cause: ShareCause, key_id: UUID | None, actor: str,
) -> int | None:
    """Hold the sharing of a personal memory for review: a pending promotion (its text a copy,
    for the queue), a history event and an audit row. None when one is pending already."""
    held = await sharing.propose_promotion(conn, tenant_id=tenant_id, memory=memory,
                                           scope=scope.value, cause=cause.value, key_id=key_id)
    if held is None:
        return None
    await history.insert_event(
        conn, tenant_id=tenant_id, memory_id=memory.id, event=HistoryEvent.PROMOTE_PROPOSED,
        reason=f"waiting for review (proposal {held}): shared with the {scope.value} once "
               "another member approves it", detail={"proposal_id": held, "cause": cause.value})
    await insert_audit(conn, tenant_id=tenant_id, key_id=key_id, actor=actor,
                       action="promote.proposed", target=str(memory.id), outcome="ok",
                       detail={"proposal_id": held, "scope": scope.value,
                               "cause": cause.value, "project": memory.project})
    return held
