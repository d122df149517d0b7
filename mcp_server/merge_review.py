"""Held merges and supersedes in the review queue, the use cases (docs/security.md, "Merge
review"): the model proposed to rewrite or retire memories of another author; the authors of
the memories the change would rewrite or retire decide it.

Who decides: a merge rewrites its target and retires its sources into the merged text, so the
author of every memory it names decides; a supersede retires its target only (the newer memory
stays as it is), so the target's author decides. Any of them may reject it; it is applied once
all of them approved. A member reads a proposal only when every memory it names is visible to
them (Row-Level Security, sql/019_merge_review_queue.sql); every statement here runs in the
caller's own transaction (``principal_tx``).

An approved change is applied as ingestion and consolidation apply one: a supersede retires
the target for its newer memory; a merge's text becomes a memory through the ordinary save
(pending row and outbox in this transaction; its ingestion workflow embeds it and compares it
with the project's memories, no model call on the request path), and the memories it merges
are retired into it. A change whose memories moved on since it was proposed (forgotten,
replaced, edited, purged) is refused and marked rejected: it is never applied to other text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

import asyncpg

from mcp_server.errors import Forbidden, InvalidInput, NotFound
from mcp_server.memories import MemoryService
from mcp_server.validation import check_reason, require_writer
from team_memory_core.models.memories import (
    HistoryEvent,
    IngestInput,
    MemoryStatus,
    Origin,
    content_hash,
    memory_id_for,
    scope_of,
)
from team_memory_core.models.principal import Principal
from team_memory_core.models.sharing import (
    Decided,
    ReplacedMemory,
    ReviewKind,
    Sharing,
    WaitingMemory,
)
from team_memory_core.rules import injection
from team_memory_core.sharing import files_of
from team_memory_core.store import history, proposals, sharing
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.memories import mark_duplicate, supersede
from team_memory_core.store.pool import principal_tx
from team_memory_core.store.proposals import NamedMemory, PendingChange

QUEUE_LIMIT = 100
# Who approves for the memories with no recorded author (an operator's import, rows from
# before keys): an operator (`team-memory review approve`), recorded under this id.
OPERATOR = UUID(int=0)
_T = TypeVar("_T")


def decider_of(principal: Principal) -> UUID:
    """The id a principal decides as: its member, or for a principal of no member (the
    operator's CLI, stdio without a key), the operator."""
    return principal.member_id or OPERATOR


def reviewer(principal: Principal) -> str:
    """How a decision names who took it."""
    return f"member:{principal.member_name}" if principal.member_name else principal.actor


async def audited(memory: MemoryService, principal: Principal, action: str,
                  target: UUID | None, work: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``work``; a refusal is audited (an accepted step audits in its transaction)."""
    try:
        return await work()
    except (InvalidInput, Forbidden, NotFound) as error:
        await memory.audit_refusal(principal, action, target, error)
        raise


@dataclass(frozen=True)
class _Change:
    """A pending change with the memories it names (as Row-Level Security shows them)."""

    held: PendingChange
    named: dict[UUID, NamedMemory]

    @property
    def kind(self) -> ReviewKind:
        return ReviewKind(self.held.kind)

    @property
    def changed(self) -> list[UUID]:
        """The memories it rewrites or retires: their authors decide it."""
        if self.kind is ReviewKind.MERGE:
            return [self.held.target_id, *self.held.source_ids]
        return [self.held.target_id]

    @property
    def deciders(self) -> set[UUID]:
        return {self._author(m) for m in self.changed}

    def _author(self, memory_id: UUID) -> UUID:
        memory = self.named.get(memory_id)
        return (memory.author_id or OPERATOR) if memory is not None else OPERATOR

    def waiting_for(self, approved: Iterable[UUID]) -> list[str]:
        """The authors whose approval it still awaits, by member name."""
        done = set(approved)
        return sorted({self.named[m].author or "an operator" for m in self.changed
                       if m in self.named and self._author(m) not in done})

    def stale(self) -> str | None:
        """Why it can no longer be applied as proposed (None: it can)."""
        for memory_id in (self.held.target_id, *self.held.source_ids):
            memory = self.named.get(memory_id)
            if memory is None or memory.purged:
                return f"memory {memory_id} was erased"
            if memory.status != MemoryStatus.ACTIVE:
                return f"memory {memory_id} is {memory.status} now"
            if memory.updated_at > self.held.created_at:
                return f"memory {memory_id} changed after the proposal"
        if self.kind is ReviewKind.MERGE and self.held.proposed_text is None:
            return "its text was erased"
        return None

    def waiting(self, caller: UUID | None) -> WaitingMemory:
        target = self.named[self.held.target_id]
        sources = [self.named[s] for s in self.held.source_ids if s in self.named]
        content = self.held.proposed_text if self.kind is ReviewKind.MERGE else \
            (sources[0].content if sources else None)
        return WaitingMemory(
            id=target.id, project=target.project,
            scope=scope_of(target.project, target.private_to), content=content or "",
            author=sources[0].author if sources else None, cause=self.held.origin,
            yours=caller in self.held.approved_by, waiting_since=self.held.created_at,
            kind=self.kind, proposal=self.held.id,
            memories=[ReplacedMemory(id=m.id, content=m.content, author=m.author,
                                     status=m.status, changed=m.id in self.changed)
                      for m in (target, *sources)],
            waiting_for=self.waiting_for(self.held.approved_by))


@dataclass
class ChangeReview:
    memory: MemoryService

    async def queue(self, principal: Principal, project: str | None) -> list[WaitingMemory]:
        """The merges and supersedes the caller decides (an author of a memory they change;
        ``yours``: approved by the caller, waiting for another author), oldest first."""
        async with principal_tx(self.memory.pool, principal) as conn:
            held = await proposals.changes_waiting(conn, project, QUEUE_LIMIT)
            changes = await _with_memories(conn, held)
        return [change.waiting(decider_of(principal)) for change in changes
                if decider_of(principal) in change.deciders]

    async def kind_waiting(self, principal: Principal, memory_id: UUID,
                           proposal: int | None) -> ReviewKind | None:
        """The kind of change waiting on this memory (None: none the caller can see)."""
        async with principal_tx(self.memory.pool, principal) as conn:
            held = await proposals.lock_changes(conn, memory_id, proposal, lock=False)
        return ReviewKind(held[0].kind) if held else None

    async def approve(self, principal: Principal, memory_id: UUID,
                      proposal: int | None) -> Decided:
        require_writer(principal)
        async with principal_tx(self.memory.pool, principal) as conn:
            change = await _decidable(conn, principal, memory_id, proposal)
            if (stale := change.stale()) is None:
                return await self._approve(conn, principal, change)
            await _close(conn, principal, change, f"out of date: {stale}")
        raise InvalidInput(f"proposal {change.held.id} is out of date ({stale}): it was not "
                           "applied, and is marked rejected")

    async def _approve(self, conn: asyncpg.Connection, principal: Principal,
                       change: _Change) -> Decided:
        caller = decider_of(principal)
        if caller in change.held.approved_by:
            raise InvalidInput(f"you approved proposal {change.held.id} already: it waits for "
                               + ", ".join(change.waiting_for(change.held.approved_by)))
        await proposals.add_approval(conn, change.held.id, caller)
        approved = {*change.held.approved_by, caller}
        if waiting := change.waiting_for(approved):
            await _note(conn, principal, change, HistoryEvent.PROPOSAL_APPROVED,
                        f"approved by {reviewer(principal)}; waiting for "
                        + ", ".join(waiting))
            await insert_audit(
                conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
                actor=principal.actor, action=f"{change.kind.value}.approval",
                target=str(change.held.target_id), outcome="ok",
                detail={"proposal_id": change.held.id, "waiting_for": waiting})
            return _decided(change, Sharing.WAITING, waiting_for=waiting)
        result = await self._apply(conn, principal, change)
        await sharing.decide(conn, change.held.id, approved=True, decided_by=reviewer(principal),
                             reason=None, result_id=result)
        await insert_audit(
            conn, tenant_id=principal.tenant_id, key_id=principal.key_id, actor=principal.actor,
            action=f"{change.kind.value}.approved", target=str(change.held.target_id),
            outcome="ok", detail={"proposal_id": change.held.id, "result_id": str(result)})
        return _decided(change, Sharing.APPLIED, result_id=result)

    async def _apply(self, conn: asyncpg.Connection, principal: Principal,
                     change: _Change) -> UUID:
        """The change, as ingestion and consolidation apply one; returns the memory that
        replaces the ones it changed."""
        held, by = change.held, f"approved by {reviewer(principal)} (proposal {change.held.id})"
        target = change.named[held.target_id]
        if change.kind is ReviewKind.SUPERSEDE:
            newer = held.source_ids[0]
            await supersede(conn, held.target_id, newer)
            await history.insert_event(
                conn, tenant_id=principal.tenant_id, memory_id=held.target_id,
                event=HistoryEvent.SUPERSEDED, reason=_why(by, held.reason),
                related_id=newer, before_text=target.content,
                after_text=change.named[newer].content, detail={"proposal_id": held.id})
            return newer
        assert held.proposed_text is not None  # a merge without text is stale
        merged = await self._save_merged(conn, principal, held, held.proposed_text)
        retired = [m for m in change.changed if m != merged]
        for memory_id in retired:
            await mark_duplicate(conn, memory_id, merged, was=MemoryStatus.ACTIVE)
            await history.insert_event(
                conn, tenant_id=principal.tenant_id, memory_id=memory_id,
                event=HistoryEvent.MERGED_INTO, reason=by, related_id=merged,
                before_text=change.named[memory_id].content, after_text=held.proposed_text,
                detail={"proposal_id": held.id})
        await proposals.record_merged_from(conn, merged, retired)
        await history.insert_event(
            conn, tenant_id=principal.tenant_id, memory_id=merged, event=HistoryEvent.MERGED,
            reason=_why(by, held.reason), after_text=held.proposed_text,
            detail={"proposal_id": held.id, "merged_from": [str(m) for m in retired]})
        return merged

    async def _save_merged(self, conn: asyncpg.Connection, principal: Principal,
                           held: PendingChange, text: str) -> UUID:
        """The merged text as a memory of the target's project, category and author, saved
        through the ordinary save (its ingestion embeds and de-duplicates it)."""
        target = await sharing.lock_promotable(conn, held.target_id)
        assert target is not None  # locked and checked current by the caller
        digest = content_hash(text)
        item = IngestInput(
            memory_id=memory_id_for(principal.tenant_id, target.project, digest, 0,
                                    target.private_to),
            tenant_id=principal.tenant_id, project=target.project, content=text,
            category=target.category, importance=target.importance, tags=target.tags,
            content_hash=digest, occurred_at=target.occurred_at, key_id=target.created_by,
            author_id=target.author_id, origin=Origin.MERGE, private_to=target.private_to)
        saved, _ = await self.memory.acknowledge_in(
            conn, principal.tenant_id, item, await files_of(conn, target),
            flags=injection.flags_of(text))
        return saved.memory_id

    async def reject(self, principal: Principal, memory_id: UUID, proposal: int | None,
                     reason: str) -> Decided:
        """Any author it waits for may reject it: nothing changes."""
        require_writer(principal)
        reason = check_reason(reason)
        async with principal_tx(self.memory.pool, principal) as conn:
            change = await _decidable(conn, principal, memory_id, proposal)
            await _close(conn, principal, change, reason)
        return _decided(change, Sharing.REJECTED)


async def _with_memories(conn: asyncpg.Connection, held: list[PendingChange], *,
                         lock: bool = False) -> list[_Change]:
    ids = sorted({m for change in held for m in (change.target_id, *change.source_ids)})
    named = {m.id: m for m in await proposals.named_memories(conn, ids, lock=lock)}
    return [_Change(change, named) for change in held]


async def _decidable(conn: asyncpg.Connection, principal: Principal, memory_id: UUID,
                     proposal: int | None) -> _Change:
    """The one pending change on ``memory_id`` (or numbered ``proposal``) the caller decides,
    locked with its memories."""
    held = await proposals.lock_changes(conn, memory_id, proposal)
    if not held:
        raise NotFound(f"no change to memory {memory_id} waiting for review")
    if len(held) > 1:
        numbers = ", ".join(str(change.id) for change in held)
        raise InvalidInput(f"memory {memory_id} has {len(held)} changes waiting for review "
                           f"(proposals {numbers}): name one with proposal")
    [change] = await _with_memories(conn, held, lock=True)
    if decider_of(principal) not in change.deciders:
        raise Forbidden(f"proposal {change.held.id} is decided by the authors of the memories "
                        "it changes (an operator for those with no recorded author)")
    return change


async def _close(conn: asyncpg.Connection, principal: Principal, change: _Change,
                 reason: str) -> None:
    """Reject it (by the caller, for ``reason``), with its history event and audit row."""
    await sharing.decide(conn, change.held.id, approved=False, decided_by=reviewer(principal),
                         reason=reason, result_id=None)
    await _note(conn, principal, change, HistoryEvent.PROPOSAL_REJECTED,
                f"not applied: rejected by {reviewer(principal)}: {reason}")
    await insert_audit(
        conn, tenant_id=principal.tenant_id, key_id=principal.key_id, actor=principal.actor,
        action=f"{change.kind.value}.rejected", target=str(change.held.target_id),
        outcome="ok", detail={"proposal_id": change.held.id, "reason": reason})


async def _note(conn: asyncpg.Connection, principal: Principal, change: _Change,
                event: HistoryEvent, reason: str) -> None:
    await history.insert_event(
        conn, tenant_id=principal.tenant_id, memory_id=change.held.target_id, event=event,
        reason=reason, related_id=change.held.source_ids[0],
        detail={"proposal_id": change.held.id, "kind": change.kind.value})


def _why(by: str, reason: str | None) -> str:
    return f"{by}: {reason}" if reason else by


def _decided(change: _Change, status: Sharing, *, result_id: UUID | None = None,
             waiting_for: list[str] | None = None) -> Decided:
    target = change.named[change.held.target_id]
    return Decided(id=target.id, status=status, scope=scope_of(target.project,
                                                                target.private_to),
                   project=target.project, kind=change.kind, proposal=change.held.id,
                   result_id=result_id, waiting_for=waiting_for or [])
