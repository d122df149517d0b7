"""Promotion and review, the use cases: promote a personal memory to its project or the team,
list the review queue, approve or reject what waits in it (docs/security.md, "Promotion and
review"). Every step writes the memory's history and an audit row in its own transaction.

A promotion shares a copy: the shared memory is a new memory (the same text, author and
origin, through the ordinary ingestion: it is de-duplicated against the shared memories),
and the personal one is superseded by it. Whether a promotion waits for review is
rules/sharing.needs_review's answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

import asyncpg

from mcp_server.errors import Forbidden, InvalidInput, NotFound, translates_outages
from mcp_server.memories import MemoryService
from mcp_server.merge_review import QUEUE_LIMIT, ChangeReview, audited, reviewer
from mcp_server.validation import check_reason, require_writer
from team_memory_core.models.memories import (
    CURRENT_STATUSES,
    TENANT_WIDE_PROJECT,
    HistoryEvent,
    Scope,
)
from team_memory_core.models.principal import Principal
from team_memory_core.models.sharing import Decided, Promoted, Sharing, WaitingMemory
from team_memory_core.rules.sharing import ShareCause, needs_review
from team_memory_core.sharing import files_of, queue_for_review, shared_copy
from team_memory_core.store import history, sharing
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.memories import supersede
from team_memory_core.store.pool import principal_tx, review_tx
from team_memory_core.store.sharing import Promotable, Promotion

_T = TypeVar("_T")


def _scope(scope: str) -> Scope:
    if scope not in (Scope.PROJECT.value, Scope.TEAM.value):
        raise InvalidInput("a memory is promoted to scope project or team")
    return Scope(scope)


@dataclass
class SharingService:
    memory: MemoryService
    changes: ChangeReview = field(init=False)  # held merges and supersedes in the queue

    def __post_init__(self) -> None:
        self.changes = ChangeReview(self.memory)

    async def _audited(self, principal: Principal, action: str, target: UUID | None,
                       work: Callable[[], Awaitable[_T]]) -> _T:
        return await audited(self.memory, principal, action, target, work)

    # --- promote -----------------------------------------------------------------------------

    @translates_outages("the promotion was not confirmed")
    async def promote(self, principal: Principal, memory_id: UUID,
                      scope: str = Scope.PROJECT.value) -> Promoted:
        """Share a personal memory with its project or the team: at once, or as a promotion
        waiting for review (a reviewed project)."""
        return await self._audited(principal, "promote", memory_id,
                                   lambda: self._promote(principal, memory_id, _scope(scope)))

    async def _promote(self, principal: Principal, memory_id: UUID, scope: Scope) -> Promoted:
        require_writer(principal)
        async with principal_tx(self.memory.pool, principal) as conn:
            memory = await _current(conn, memory_id)
            if memory.private_to is None:
                raise InvalidInput(f"memory {memory_id} is shared already: only a personal "
                                   "memory is promoted")
            project = self._target(principal, memory, scope)
            reviews = await sharing.reviews_of(conn, sorted({memory.project, project}))
            if not needs_review(ShareCause.PROMOTION, reviews,
                                flagged=bool(memory.injection_flags)):
                return await self._share(conn, principal, memory, scope, None)
            held = await queue_for_review(
                conn, tenant_id=principal.tenant_id, memory=memory, scope=scope,
                cause=ShareCause.PROMOTION, key_id=principal.key_id, actor=principal.actor)
            if held is None:
                raise InvalidInput(f"memory {memory_id} is waiting for review already")
        return Promoted(id=memory_id, status=Sharing.WAITING, scope=scope, project=project)

    def _target(self, principal: Principal, memory: Promotable, scope: Scope) -> str:
        """The project the memory is shared in; refused when it cannot be."""
        if scope is Scope.TEAM:
            if principal.project is not None:
                raise Forbidden(f"this key is limited to project {principal.project!r}: "
                                "sharing with the team needs a key of the whole tenant")
            return TENANT_WIDE_PROJECT
        if memory.project == TENANT_WIDE_PROJECT:
            raise InvalidInput("a personal memory of every project ('*') is promoted to the "
                               "team, not to a project")
        return memory.project

    async def _share(self, conn: asyncpg.Connection, principal: Principal, memory: Promotable,
                     scope: Scope, approved: Promotion | None) -> Promoted:
        """The shared copy (pending, with its ingestion queued), the personal memory retired
        in its favour, their history and the audit row, in the caller's transaction."""
        cited = await files_of(conn, memory)
        if cited and scope is Scope.TEAM:
            raise InvalidInput("a memory about files belongs to its repository: promote it to "
                               "the project, not the team")
        item, _ = await self.memory.acknowledge_in(
            conn, principal.tenant_id, shared_copy(memory, principal.tenant_id, scope), cited)
        await supersede(conn, memory.id, item.memory_id, was=CURRENT_STATUSES)
        by = "" if approved is None else f", approved by {reviewer(principal)}"
        await history.insert_event(
            conn, tenant_id=principal.tenant_id, memory_id=memory.id,
            event=HistoryEvent.PROMOTED, related_id=item.memory_id,
            reason=f"shared with the {scope.value} as {item.memory_id}{by}")
        await history.insert_event(
            conn, tenant_id=principal.tenant_id, memory_id=item.memory_id,
            event=HistoryEvent.PROMOTED, reason=f"shared from a personal memory{by}")
        await insert_audit(
            conn, tenant_id=principal.tenant_id, key_id=principal.key_id, actor=principal.actor,
            action="promote" if approved is None else "promote.approved",
            target=str(memory.id), outcome="ok",
            detail={"shared_id": item.memory_id, "scope": scope.value,
                    "project": item.project,
                    **({} if approved is None else {"proposal_id": approved.id})})
        return Promoted(id=memory.id, status=Sharing.SHARED, scope=scope,
                        project=item.project, shared_id=item.memory_id)

    # --- the review queue -------------------------------------------------------------------------

    async def queue(self, principal: Principal, project: str | None = None) -> list[WaitingMemory]:
        """What waits for review in the caller's reach (or one project of it), oldest first:
        promotions, then the merges and supersedes the caller decides."""
        scope = None if project is None else self.memory.resolve_project(principal, project)
        async with principal_tx(self.memory.pool, principal) as conn:
            found = await sharing.waiting(conn, scope, QUEUE_LIMIT)
        return [*self._promotions(principal, found),
                *await self.changes.queue(principal, scope)]

    def _promotions(self, principal: Principal, found: list[Promotion]) -> list[WaitingMemory]:
        return [WaitingMemory(
            id=row.memory_id, project=row.project, scope=Scope(row.scope),
            content=row.content or "", author=row.author, cause=row.cause,
            yours=row.member_id is not None and row.member_id == principal.member_id,
            waiting_since=row.created_at) for row in found]

    @translates_outages("the approval was not confirmed")
    async def approve(self, principal: Principal, memory_id: UUID,
                      proposal: int | None = None) -> Decided:
        """Approve what waits for review on this memory: a held merge or supersede (applied
        once every author it changes approved), else a promotion (shared at once)."""
        kind = await self.changes.kind_waiting(principal, memory_id, proposal)
        if kind is not None:
            return await self._audited(
                principal, f"{kind.value}.approve", memory_id,
                lambda: self.changes.approve(principal, memory_id, proposal))
        return Decided.of(await self._audited(principal, "promote.approve", memory_id,
                                              lambda: self._approve(principal, memory_id)))

    async def _approve(self, principal: Principal, memory_id: UUID) -> Promoted:
        require_writer(principal)
        async with review_tx(self.memory.pool, principal) as conn:
            waiting = await _waiting(conn, memory_id)
            if principal.member_id is not None and waiting.member_id == principal.member_id:
                raise Forbidden("another member must approve your own memory (reject_memory "
                                "withdraws it)")
            scope = Scope(waiting.scope)
            memory = await _current(conn, memory_id)
            self._target(principal, memory, scope)
            shared = await self._share(conn, principal, memory, scope, waiting)
            await sharing.decide(conn, waiting.id, approved=True,
                                 decided_by=reviewer(principal), reason=None,
                                 result_id=shared.shared_id)
        return shared

    @translates_outages("the rejection was not confirmed")
    async def reject(self, principal: Principal, memory_id: UUID, reason: str,
                     proposal: int | None = None) -> Decided:
        """Reject what waits for review on this memory: a held merge or supersede (nothing
        changes), else a promotion (the memory stays its author's personal memory; its
        author may reject it too: a withdrawal)."""
        kind = await self.changes.kind_waiting(principal, memory_id, proposal)
        if kind is not None:
            return await self._audited(
                principal, f"{kind.value}.reject", memory_id,
                lambda: self.changes.reject(principal, memory_id, proposal, reason))
        return Decided.of(await self._audited(principal, "promote.reject", memory_id,
                                              lambda: self._reject(principal, memory_id,
                                                                   reason)))

    async def _reject(self, principal: Principal, memory_id: UUID, reason: str) -> Promoted:
        require_writer(principal)
        reason = check_reason(reason)
        async with review_tx(self.memory.pool, principal) as conn:
            waiting = await _waiting(conn, memory_id)
            await sharing.decide(conn, waiting.id, approved=False,
                                 decided_by=reviewer(principal), reason=reason, result_id=None)
            await history.insert_event(
                conn, tenant_id=principal.tenant_id, memory_id=memory_id,
                event=HistoryEvent.PROMOTE_REJECTED,
                reason=f"not shared: rejected by {reviewer(principal)}: {reason}",
                detail={"proposal_id": waiting.id})
            await insert_audit(
                conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
                actor=principal.actor, action="promote.rejected", target=str(memory_id),
                outcome="ok", detail={"proposal_id": waiting.id, "reason": reason,
                                      "scope": waiting.scope})
        return Promoted(id=memory_id, status=Sharing.REJECTED, scope=Scope(waiting.scope),
                        project=TENANT_WIDE_PROJECT if waiting.scope == Scope.TEAM
                        else waiting.project)


async def _current(conn: asyncpg.Connection, memory_id: UUID) -> Promotable:
    """The memory, locked, if it is current and not erased (else as missing)."""
    memory = await sharing.lock_promotable(conn, memory_id)
    if memory is None or memory.purged or memory.status not in CURRENT_STATUSES:
        raise NotFound(f"no memory {memory_id} to share (forgotten, replaced or unknown)")
    return memory


async def _waiting(conn: asyncpg.Connection, memory_id: UUID) -> Promotion:
    waiting = await sharing.lock_waiting(conn, memory_id)
    if waiting is None:
        raise NotFound(f"no memory {memory_id} waiting for review")
    return waiting
