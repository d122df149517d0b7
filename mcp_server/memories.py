"""The use cases behind every entry point (MCP tools, Claude Code hooks, the browser API,
import/export, the CLI): save, forget, purge, and reads by id. Writes are audited in their own
transaction; search and the working set come from ``Recall``.

The server embeds only search queries (and acknowledged memories whose workflow has not
embedded them yet, so that a save is searchable the moment it returns). No LLM call here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Concatenate, ParamSpec, TypeVar, Unpack
from uuid import UUID

import asyncpg
from temporalio.client import Client

from mcp_server.errors import Forbidden, InvalidInput, NotFound, RateLimited, translates_outages
from mcp_server.ratelimit import RateLimiter, retry_message
from mcp_server.search.recall import Recall, memory_view
from mcp_server.validation import (
    MemoryFields,
    check_files,
    check_injection_flags,
    check_reason,
    prepare_memory,
    require_writer,
    statuses,
)
from team_memory_core import erasure, telemetry
from team_memory_core.anchoring import anchor_memory
from team_memory_core.contract import ingest_workflow_id
from team_memory_core.models.anchors import AnchorInput
from team_memory_core.models.consolidation import ManifestoView
from team_memory_core.models.memories import (
    CURRENT_STATUSES,
    TENANT_WIDE_PROJECT,
    HistoryEvent,
    IngestInput,
    Memory,
    MemoryStatus,
    MemoryStatusReport,
    SaveResult,
    Scope,
    scope_of,
)
from team_memory_core.models.principal import Principal
from team_memory_core.rules.consolidation import render_manifesto
from team_memory_core.rules.injection import flags_of
from team_memory_core.rules.sharing import ShareCause, needs_review
from team_memory_core.rules.text import approx_tokens
from team_memory_core.sharing import kept_private, queue_for_review
from team_memory_core.store import consolidation, history, memories, outbox, sharing
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.memories import MemoryRow, MemoryState
from team_memory_core.store.pool import beyond_member, principal_tx
from team_memory_core.store.tenants import members_named

_P = ParamSpec("_P")
_R = TypeVar("_R")
_Method = Callable[Concatenate["MemoryService", Principal, _P], Awaitable[_R]]


def _audited(action: str) -> Callable[[_Method[_P, _R]], _Method[_P, _R]]:
    """Record refused writes in the audit trail (accepted ones are recorded in the write's
    own transaction, so an audit row exists exactly when the write happened)."""

    def wrap(method: _Method[_P, _R]) -> _Method[_P, _R]:
        @functools.wraps(method)
        async def audited(
            self: MemoryService, principal: Principal, /, *args: _P.args, **kwargs: _P.kwargs
        ) -> _R:
            try:
                return await method(self, principal, *args, **kwargs)
            except (InvalidInput, Forbidden, NotFound) as error:
                target = args[0] if args and isinstance(args[0], UUID) else None
                await self.audit_refusal(principal, action, target, error)
                raise

        return audited

    return wrap


class InsertOrder:
    """Hands out turns so that concurrent saves insert their rows in a given order."""

    def __init__(self) -> None:
        self._next = 0
        self._waiting: dict[int, asyncio.Future[None]] = {}

    def turn(self, index: int) -> InsertTurn:
        return InsertTurn(self, index)

    async def _wait(self, index: int) -> None:
        if index != self._next:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[index] = waiter
            await waiter

    def _done(self, index: int) -> None:
        if index == self._next:
            self._next += 1
            waiter = self._waiting.pop(self._next, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


@dataclass(frozen=True)
class InsertTurn:
    order: InsertOrder
    index: int

    async def wait(self) -> None:
        await self.order._wait(self.index)

    def done(self) -> None:
        """Let the next turn insert (idempotent)."""
        self.order._done(self.index)


@dataclass
class MemoryService(Recall):
    temporal: Client
    limiter: RateLimiter = field(init=False)
    writers: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.limiter = RateLimiter(self.settings.rate_limit_per_minute)
        # Many saves at once only queue for the CPU and the pool's connections in front of
        # the searches; waiting for a turn here costs them nothing (docs/architecture.md).
        self.writers = asyncio.Semaphore(
            max(1, min(self.settings.save_concurrency, self.settings.db_pool_max // 2)))

    def check_rate(self, principal: Principal) -> None:
        """Count one request against the key's rate limit (per server process)."""
        wait = self.limiter.acquire(principal.key_id)
        if wait:
            raise RateLimited(retry_message(wait))

    async def audit_refusal(
        self, principal: Principal, action: str, target: UUID | None, error: Exception
    ) -> None:
        outcome = "denied" if isinstance(error, Forbidden) else "rejected"
        async with principal_tx(self.pool, principal) as conn:
            await insert_audit(
                conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
                actor=principal.actor, action=action,
                target=None if target is None else str(target),
                outcome=outcome, detail={"error": str(error)[:300]},
            )

    # --- write path -----------------------------------------------------------------------

    @translates_outages("the save was not confirmed")
    @_audited("save")
    async def save(
        self,
        principal: Principal,
        content: str,
        *,
        files: Sequence[str | AnchorInput] | None = None,
        turn: InsertTurn | None = None,
        injection_flags: Sequence[str] = (),
        **fields: Unpack[MemoryFields],
    ) -> SaveResult:
        """Acknowledge a memory: a pending row, its anchors to the ``files`` it cites and the
        outbox row that starts its IngestMemory workflow, in one transaction. With a ``turn``,
        concurrent saves insert their rows in turn order (the insertion order search uses for
        neighbours; bulk import keeps the file's order). The row is flagged at once when the
        local rules find the text aimed at AI agents (``injection_flags``: flags an import
        brings along, added to the rules' own)."""
        try:
            if turn is not None:
                await turn.wait()
            item = prepare_memory(self.settings, principal, content, **fields)
            cited = check_files(files, item.project)
            flags = list(dict.fromkeys(
                flags_of(item.content) + check_injection_flags(injection_flags)))
            held = _held_scope(item, principal, flags)
            if held is not None:  # its author's until another member approves it
                item = kept_private(item, principal.member_id)  # type: ignore[arg-type]
            item, found, workflow_id = await self._acknowledge(principal, item, turn, cited,
                                                               flags, held)
        finally:
            if turn is not None:
                turn.done()
        telemetry.saves.add(1, {"already_saved": found is not None})
        return SaveResult(
            id=item.memory_id, project=item.project, workflow_id=workflow_id,
            status=MemoryStatus.PENDING if found is None else found.status,
            duplicate_of=None if found is None else found.duplicate_of,
            already_saved=found is not None, redacted=item.redactions, injection_flags=flags,
            scope=scope_of(item.project, item.private_to),
        )

    async def _acknowledge(
        self, principal: Principal, item: IngestInput, turn: InsertTurn | None,
        cited: Sequence[AnchorInput] = (), flags: Sequence[str] = (),
        held: Scope | None = None,
    ) -> tuple[IngestInput, MemoryState | None, str]:
        """Commit the pending row, its outbox row (the worker's relay starts its workflow) and
        the audit entry in one transaction; returns the item as inserted (or the live memory
        that already holds this text: a double save is idempotent) and the workflow id. Text
        whose memory was forgotten or purged is saved again as the next generation: a new
        memory with its own ingestion workflow, so nothing is lost and the answer does not
        reveal that the text was there before. Nothing here waits on Temporal."""
        async with self.writers, principal_tx(self.pool, principal) as conn:
            item, found = await self.acknowledge_in(conn, principal.tenant_id, item, cited,
                                                    turn, flags)
            await self._audit_save(conn, principal, item, already_saved=found is not None,
                                   flags=flags if found is None else ())
            if held is not None and found is None:
                memory = await sharing.lock_promotable(conn, item.memory_id)
                assert memory is not None  # inserted in this transaction
                await queue_for_review(conn, tenant_id=principal.tenant_id, memory=memory,
                                       scope=held, cause=ShareCause.SAVE,
                                       key_id=principal.key_id, actor=principal.actor)
        return item, found, item.workflow_id(principal.tenant_name)

    async def acknowledge_in(
        self, conn: asyncpg.Connection, tenant_id: UUID, item: IngestInput,
        cited: Sequence[AnchorInput] = (), turn: InsertTurn | None = None,
        flags: Sequence[str] = (),
    ) -> tuple[IngestInput, MemoryState | None]:
        """The pending row, its anchors and its outbox row in the caller's transaction (a
        save's, or a promotion's); see ``_acknowledge``."""
        while True:
            if await memories.insert_pending(conn, item, flags):
                await anchor_memory(conn, tenant_id, item.memory_id, item.project, cited)
                if turn is not None:
                    turn.done()
                await outbox.enqueue(conn, item, self.settings.task_queue,
                                     telemetry.trace_carrier())
                return item, None
            found = await memories.fetch_status(conn, item.memory_id)
            assert found is not None  # the id embeds tenant and project: it is in scope
            if found.status != MemoryStatus.FORGOTTEN:
                await anchor_memory(conn, tenant_id, item.memory_id, item.project, cited)
                return item, found
            item = item.next_generation()  # nothing was written: again, with its own id

    async def _audit_save(self, conn: asyncpg.Connection, principal: Principal,
                          item: IngestInput, *, already_saved: bool,
                          flags: Sequence[str] = ()) -> None:
        flagged = {"injection_flags": list(flags)} if flags else {}
        await insert_audit(
            conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
            actor=principal.actor, action="save", target=str(item.memory_id), outcome="ok",
            detail={"project": item.project, "already_saved": already_saved,
                    "redacted": item.redactions, **flagged})

    @translates_outages("the forget was not confirmed")
    @_audited("forget")
    async def forget(self, principal: Principal, memory_id: UUID, reason: str) -> Memory:
        require_writer(principal)
        reason = check_reason(reason)
        async with principal_tx(self.pool, principal) as conn:
            if not await memories.forget(conn, memory_id):
                raise NotFound(f"no memory {memory_id} to forget")
            async with beyond_member(conn, principal.member_id):
                await sharing.withdraw(conn, [memory_id], "withdrawn: the memory was forgotten")
            await history.insert_event(conn, tenant_id=principal.tenant_id, memory_id=memory_id,
                                       event=HistoryEvent.FORGOTTEN, reason=reason,
                                       detail={"key_id": str(principal.key_id)})
            await insert_audit(conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
                               actor=principal.actor, action="forget", target=str(memory_id),
                               outcome="ok")
            record = await memories.get_memory(conn, memory_id)
        assert record is not None
        return memory_view(record)

    @translates_outages("the purge was not confirmed")
    @_audited("purge")
    async def purge(
        self, principal: Principal, memory_id: UUID, reason: str
    ) -> erasure.PurgeReport:
        """Erase the memory's text everywhere (data-protection requests); audited."""
        require_writer(principal)
        actor = erasure.Actor(tenant_id=principal.tenant_id, tenant_name=principal.tenant_name,
                              name=principal.actor, key_id=principal.key_id,
                              projects=principal.projects, member_id=principal.member_id)
        try:
            report = await erasure.purge(self.pool, self.temporal, self.settings, actor,
                                         memory_id, check_reason(reason))
        except erasure.MemoryNotFound as error:
            raise NotFound(str(error)) from None
        finally:  # erased from the database even when Temporal did not answer
            self.pending_vectors.discard([memory_id])
        self.pending_vectors.discard(report.purged)
        return report

    # --- reads by id -----------------------------------------------------------------------

    async def export(self, principal: Principal, project: str | None,
                     page: int = 500) -> AsyncIterator[Memory]:
        """A project's current memories in insertion order (pages of ``page`` rows); the
        export is audited with the first page (a refused one too)."""
        try:
            scope = self.resolve_project(principal, project)
        except (InvalidInput, Forbidden) as error:
            await self.audit_refusal(principal, "export", None, error)
            raise
        after = 0
        while True:
            async with principal_tx(self.pool, principal) as conn:
                found = await memories.export_page(conn, scope, statuses(False), after, page)
                if after == 0:
                    await insert_audit(
                        conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
                        actor=principal.actor, action="export", target=scope, outcome="ok")
            for memory in await self.with_files(principal,
                                                [memory_view(r) for r in found.memories]):
                yield memory
            if len(found.memories) < page:
                return
            after = found.last_seq

    async def member_ids(self, principal: Principal, names: list[str]) -> dict[str, UUID]:
        """The ids of the tenant's members of these names (unknown names are left out)."""
        async with principal_tx(self.pool, principal) as conn:
            return await members_named(conn, principal.tenant_id, names)

    async def pending(self, principal: Principal, ids: list[UUID]) -> list[UUID]:
        """Those of these saved memories that their workflows have not committed yet."""
        async with principal_tx(self.pool, principal) as conn:
            return await memories.pending_ids(conn, ids)

    async def get(
        self, principal: Principal, memory_id: UUID, *, include_history: bool = False
    ) -> Memory:
        memories = await self.get_many(principal, [memory_id], include_history=include_history)
        return memories[0]

    async def get_many(
        self, principal: Principal, ids: list[UUID], *, include_history: bool = False
    ) -> list[Memory]:
        if not 1 <= len(ids) <= self.settings.search_limit_max:
            raise InvalidInput(f"ask for 1 to {self.settings.search_limit_max} ids")
        async with principal_tx(self.pool, principal) as conn:
            rows = {row.id: row for row in await memories.get_memories(conn, ids)}
        found = []
        for memory_id in ids:
            row = rows.get(memory_id)
            if row is None or row.status == MemoryStatus.FORGOTTEN:
                raise NotFound(f"no memory {memory_id}")
            if not include_history and row.status not in CURRENT_STATUSES:
                raise NotFound(_not_current(row))
            found.append(memory_view(row))
        return await self.with_files(principal, found)

    async def status(self, principal: Principal, memory_id: UUID) -> MemoryStatusReport:
        async with principal_tx(self.pool, principal) as conn:
            row = await memories.get_memory(conn, memory_id)
            events = await history.memory_events(conn, memory_id) if row else []
        if row is None:
            return MemoryStatusReport(id=memory_id, status="unknown",
                                      dedupe_policy=self.settings.dedupe_policy)
        return MemoryStatusReport(
            id=memory_id, status=row.status, duplicate_of=row.duplicate_of,
            superseded_by=row.superseded_by, dedupe_policy=self.settings.dedupe_policy,
            workflow_id=ingest_workflow_id(principal.tenant_name, row.project,
                                           row.content_hash, row.generation, row.private_to),
            history=events,
        )

    async def recent_summary(self, principal: Principal, project: str | None) -> list[Memory]:
        scope = self.resolve_project(principal, project)
        since = datetime.now(UTC) - timedelta(hours=24)
        async with principal_tx(self.pool, principal) as conn:
            rows = await memories.recent_important(conn, sorted({scope, TENANT_WIDE_PROJECT}),
                                                  since, 3, 50)
        # Read into a model without its asking: a flagged memory stays out (docs/security.md).
        return [memory_view(row) for row in rows if not row.injection_flags]

    async def manifesto(self, principal: Principal, project: str | None) -> ManifestoView:
        """The project's manifesto as the last consolidation wrote it (empty before one ran)."""
        scope = self.resolve_project(principal, project)
        async with principal_tx(self.pool, principal) as conn:
            stored = await consolidation.manifesto(conn, scope)
        if stored is None:
            return ManifestoView(project=scope, rules=[])
        text = render_manifesto(stored.rules)
        return ManifestoView(project=scope, rules=stored.rules, policy=stored.policy,
                             generated_at=stored.generated_at, tokens=approx_tokens(text))


def _not_current(row: MemoryRow) -> str:
    pointer = row.superseded_by or row.duplicate_of
    where = f" by {pointer}" if pointer else ""
    return (f"memory {row.id} is {row.status}{where}; "
            "pass include_history=true to read it anyway")


def _held_scope(item: IngestInput, principal: Principal, flags: Sequence[str]) -> Scope | None:
    """Where a save would share a memory that must wait for review first (rules/sharing.py:
    text that looks aimed at AI agents), None when it is shared (or kept personal) at once.
    Without a member to hold it for (an operator's import), it is saved flagged."""
    if item.private_to is not None or principal.member_id is None:
        return None
    if not needs_review(ShareCause.SAVE, (), flagged=bool(flags)):
        return None
    return scope_of(item.project, None)
