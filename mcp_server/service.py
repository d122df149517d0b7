"""What the MCP tools do: validate, start ingestion workflows, and answer reads from PostgreSQL.

The server embeds only search queries (and acknowledged memories whose workflow has not
embedded them yet, so that a save is searchable the moment it returns). No LLM call here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Concatenate, ParamSpec, TypeVar
from uuid import UUID

import asyncpg
import numpy as np
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from mcp_server.ratelimit import RateLimiter, retry_message
from mcp_server.retrieval import Retriever
from team_memory_core import erasure, telemetry
from team_memory_core.contract import INGEST_WORKFLOW, ingest_attributes, ingest_workflow_id
from team_memory_core.embedder import Embedder, embed_async
from team_memory_core.models import (
    ALL_STATUSES,
    CURRENT_STATUSES,
    PROJECT_PATTERN,
    TENANT_WIDE_PROJECT,
    Category,
    IngestInput,
    ManifestoView,
    Memory,
    MemoryHit,
    MemoryStatus,
    MemoryStatusReport,
    Principal,
    SaveResult,
    WorkingSet,
    approx_tokens,
    content_hash,
    humanize_age,
    memory_id_for,
)
from team_memory_core.rules import ranking
from team_memory_core.rules.consolidation import render_manifesto
from team_memory_core.rules.redaction import preview, redact, redact_tags
from team_memory_core.settings import Settings
from team_memory_core.store import consolidation, history, memories, search
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.memories import MemoryRow, MemoryState
from team_memory_core.store.pool import principal_tx
from team_memory_core.store.search import Candidate, PendingText, PendingVectors, SearchFilters
from team_memory_core.temporal import keyring_of

_SNIPPET_CHARS = 160
_PENDING_EMBED_LIMIT = 64


class InvalidInput(ValueError):
    """Bad input from the caller; nothing was written."""


class NotFound(LookupError):
    pass


class Forbidden(PermissionError):
    pass


class RateLimited(Forbidden):
    pass


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
                await self._audit_refusal(principal, action, target, error)
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
class MemoryService:
    settings: Settings
    pool: asyncpg.Pool
    temporal: Client
    embedder: Embedder
    limiter: RateLimiter = field(init=False)
    retriever: Retriever = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.settings.rate_limit_per_minute)
        self.retriever = Retriever(self.settings)

    def check_rate(self, principal: Principal) -> None:
        """Count one request against the key's rate limit (per server process)."""
        wait = self.limiter.acquire(principal.key_id)
        if wait:
            raise RateLimited(retry_message(wait))

    async def _audit_refusal(
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

    @_audited("save")
    async def save(
        self,
        principal: Principal,
        content: str,
        *,
        category: str = Category.GENERAL.value,
        importance: int = 1,
        tags: list[str] | None = None,
        project: str | None = None,
        occurred_at: datetime | None = None,
        source: str | None = None,
        turn: InsertTurn | None = None,
    ) -> SaveResult:
        """Acknowledge a memory: a pending row and its IngestMemory workflow, in one
        transaction. With a ``turn``, concurrent saves insert their rows in turn order (the
        insertion order search uses for neighbours; bulk import keeps the file's order)."""
        try:
            if turn is not None:
                await turn.wait()
            item = self.prepare(principal, content, category=category, importance=importance,
                                tags=tags, project=project, occurred_at=occurred_at,
                                source=source)
            item, found, workflow_id = await self._acknowledge(principal, item, turn)
        finally:
            if turn is not None:
                turn.done()
        telemetry.saves.add(1, {"already_saved": found is not None})
        return SaveResult(
            id=item.memory_id, project=item.project, workflow_id=workflow_id,
            status=MemoryStatus.PENDING if found is None else found.status,
            duplicate_of=None if found is None else found.duplicate_of,
            already_saved=found is not None, redacted=item.redactions,
        )

    async def _acknowledge(
        self, principal: Principal, item: IngestInput, turn: InsertTurn | None
    ) -> tuple[IngestInput, MemoryState | None, str]:
        """Insert the pending row and start its workflow in one transaction; returns the item
        as inserted (or the live memory that already holds this text: a double save is
        idempotent) and the workflow id. Text whose memory was forgotten or purged is saved
        again as the next generation: a new memory with its own ingestion workflow, so nothing
        is lost and the answer does not reveal that the text was there before."""
        keyring = keyring_of(self.temporal)
        while True:
            workflow_id = ingest_workflow_id(principal.tenant_name, item.project,
                                             item.content_hash, item.generation)
            # The workflow's payload key, committed before Temporal sees the workflow (a
            # worker may run it before the transaction below commits; that commit makes the
            # key durable). Before the transaction, not in it: it takes a connection of its own.
            await keyring.prepare(principal.tenant_id, workflow_id, flushed_by_caller=True)
            async with principal_tx(self.pool, principal) as conn:
                if await memories.insert_pending(conn, item):
                    if turn is not None:
                        turn.done()
                    # Inside the transaction: if the start fails, the row is rolled back.
                    await self._start_ingestion(item, principal, workflow_id)
                    await self._audit_save(conn, principal, item, already_saved=False)
                    return item, None, workflow_id
                found = await memories.fetch_status(conn, item.memory_id)
                assert found is not None  # the id embeds tenant and project: it is in scope
                if found.status != MemoryStatus.FORGOTTEN:
                    await self._audit_save(conn, principal, item, already_saved=True)
                    return item, found, workflow_id
            item = item.next_generation()  # nothing was written: again, with its own key

    async def _audit_save(self, conn: asyncpg.Connection, principal: Principal,
                          item: IngestInput, *, already_saved: bool) -> None:
        await insert_audit(
            conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
            actor=principal.actor, action="save", target=str(item.memory_id), outcome="ok",
            detail={"project": item.project, "already_saved": already_saved,
                    "redacted": item.redactions})

    def prepare(
        self,
        principal: Principal,
        content: str,
        *,
        category: str = Category.GENERAL.value,
        importance: int = 1,
        tags: list[str] | None = None,
        project: str | None = None,
        occurred_at: datetime | None = None,
        source: str | None = None,
    ) -> IngestInput:
        """Validate and redact a memory to save (no I/O): raises InvalidInput/Forbidden."""
        _require_writer(principal)
        scope = self.resolve_project(principal, project)
        cleaned = redact(self._check_content(content))
        if not cleaned.text.strip():
            raise InvalidInput("content is empty once private spans are removed")
        checked_tags, tag_kinds = self._check_tags(tags or [])
        checked_source, source_kinds = _check_source(source)
        digest = content_hash(cleaned.text)
        return IngestInput(
            memory_id=memory_id_for(principal.tenant_id, scope, digest),
            tenant_id=principal.tenant_id,
            project=scope,
            content=cleaned.text,
            category=_check_category(category),
            importance=_check_importance(importance),
            tags=checked_tags,
            content_hash=digest,
            occurred_at=check_time(occurred_at, "occurred_at") or datetime.now(UTC),
            source=checked_source,
            key_id=principal.key_id,
            redactions=list(dict.fromkeys([*cleaned.kinds, *tag_kinds, *source_kinds])),
        )

    async def _start_ingestion(
        self, item: IngestInput, principal: Principal, workflow_id: str
    ) -> None:
        # Already started: the same content was ingested before under this id; nothing to do.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.temporal.start_workflow(
                INGEST_WORKFLOW,
                item,
                id=workflow_id,
                task_queue=self.settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=ingest_attributes(principal.tenant_name, item.project,
                                                    item.category.value),
                memo={"preview": preview(item.content), "memory_id": str(item.memory_id)},
            )

    @_audited("forget")
    async def forget(self, principal: Principal, memory_id: UUID, reason: str) -> Memory:
        _require_writer(principal)
        reason = _check_reason(reason)
        async with principal_tx(self.pool, principal) as conn:
            if not await memories.forget(conn, memory_id):
                raise NotFound(f"no memory {memory_id} to forget")
            await history.insert_event(conn, tenant_id=principal.tenant_id, memory_id=memory_id,
                                       event="forgotten", reason=reason,
                                       detail={"key_id": str(principal.key_id)})
            await insert_audit(conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
                               actor=principal.actor, action="forget", target=str(memory_id),
                               outcome="ok")
            record = await memories.get_memory(conn, memory_id)
        assert record is not None
        return _memory(record)

    @_audited("purge")
    async def purge(
        self, principal: Principal, memory_id: UUID, reason: str
    ) -> erasure.PurgeReport:
        """Erase the memory's text everywhere (data-protection requests); audited."""
        _require_writer(principal)
        actor = erasure.Actor(tenant_id=principal.tenant_id, tenant_name=principal.tenant_name,
                              name=principal.actor, key_id=principal.key_id,
                              projects=principal.projects)
        try:
            return await erasure.purge(self.pool, self.temporal, self.settings, actor, memory_id,
                                       _check_reason(reason))
        except erasure.MemoryNotFound as error:
            raise NotFound(str(error)) from None

    # --- read path ------------------------------------------------------------------------

    @telemetry.timed(telemetry.search_duration)
    async def search(
        self,
        principal: Principal,
        query: str,
        *,
        limit: int = 5,
        category: str | None = None,
        project: str | None = None,
        tags: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        include_history: bool = False,
    ) -> list[MemoryHit]:
        """Hybrid search (docs/retrieval.md): BM25 and vector candidates, neighbour context,
        importance and recency boosts; the current project plus tenant-wide memories."""
        query = self._check_query(query)
        if not 1 <= limit <= self.settings.search_limit_max:
            raise InvalidInput(f"limit must be between 1 and {self.settings.search_limit_max}")
        filters = self._filters(principal, project, category, tags, since, until,
                                include_history)
        query_vector = (await embed_async(self.embedder, [query]))[0]
        now = datetime.now(UTC)
        async with principal_tx(self.pool, principal) as conn:
            pending = await search.pending_without_embedding(conn, filters,
                                                             _PENDING_EMBED_LIMIT)
            ranked = await self.retriever.rank(
                conn, query, query_vector, filters,
                await self._embed_pending(pending), now, limit,
            )
        return [_hit(row, score, now) for row, score in ranked[:limit]]

    async def working_set(
        self, principal: Principal, project: str | None = None, query: str | None = None,
        budget_tokens: int | None = None, text_of: Callable[[Memory], str] | None = None,
    ) -> WorkingSet:
        """The working-set rule (memory://working_set and the session-start context): the
        memories that matter most now, in full, within a token budget. With a query, ranked by
        relevance x importance x recency (the search score); without, by importance x recency.
        Best first; a memory too large for what is left of the budget is skipped, not cut.
        ``text_of`` is how each memory will be rendered (its cost against the budget)."""
        budget = self.settings.working_set_tokens if budget_tokens is None else budget_tokens
        if budget < 0:
            raise InvalidInput("budget_tokens must not be negative")
        render = text_of or _content
        scope = self.resolve_project(principal, project)
        if query is not None and query.strip():
            hits = await self.search(principal, query, project=project,
                                     limit=self.settings.search_limit_max)
            memories = await self.get_many(principal, [h.id for h in hits]) if hits else []
        else:
            memories = await self._important_recent(principal, project)
        chosen = ranking.within_budget(memories, render, budget)
        return WorkingSet(project=scope, budget_tokens=budget, memories=chosen,
                          tokens=sum(approx_tokens(render(m)) for m in chosen))

    async def _important_recent(self, principal: Principal, project: str | None) -> list[Memory]:
        filters = self._filters(principal, project, None, None, None, None, False)
        weights = self.retriever.weights()
        async with principal_tx(self.pool, principal) as conn:
            rows = await search.important_recent(
                conn, filters, weights.importance_boost, weights.recency_weight,
                weights.half_life_days, 4 * self.settings.search_limit_max,
            )
        return [_memory(row) for row in rows]

    def _filters(
        self, principal: Principal, project: str | None, category: str | None,
        tags: list[str] | None, since: datetime | None, until: datetime | None,
        include_history: bool,
    ) -> SearchFilters:
        scope = self.resolve_project(principal, project)
        since, until = check_time(since, "since"), check_time(until, "until")
        if since is not None and until is not None and since >= until:
            raise InvalidInput("since must be earlier than until")
        return SearchFilters(
            projects=sorted({scope, TENANT_WIDE_PROJECT}),
            statuses=_statuses(include_history),
            category=None if category is None else _check_category(category),
            tags=self._check_tags(tags)[0] if tags else None,
            since=since,
            until=until,
        )

    async def _embed_pending(self, pending: list[PendingText]) -> PendingVectors:
        if not pending:
            return PendingVectors(ids=[], vectors=[])
        vectors = await embed_async(self.embedder, [p.content for p in pending])
        return PendingVectors(ids=[p.id for p in pending],
                              vectors=[np.asarray(v) for v in vectors])

    async def export(self, principal: Principal, project: str | None,
                     page: int = 500) -> AsyncIterator[Memory]:
        """A project's current memories in insertion order (pages of ``page`` rows); the
        export is audited with the first page (a refused one too)."""
        try:
            scope = self.resolve_project(principal, project)
        except (InvalidInput, Forbidden) as error:
            await self._audit_refusal(principal, "export", None, error)
            raise
        after = 0
        while True:
            async with principal_tx(self.pool, principal) as conn:
                found = await memories.export_page(conn, scope, _statuses(False), after, page)
                if after == 0:
                    await insert_audit(
                        conn, tenant_id=principal.tenant_id, key_id=principal.key_id,
                        actor=principal.actor, action="export", target=scope, outcome="ok")
            for row in found.memories:
                yield _memory(row)
            if len(found.memories) < page:
                return
            after = found.last_seq

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
            found.append(_memory(row))
        return found

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
                                           row.content_hash, row.generation),
            history=events,
        )

    async def recent_summary(self, principal: Principal, project: str | None) -> list[Memory]:
        scope = self.resolve_project(principal, project)
        since = datetime.now(UTC) - timedelta(hours=24)
        async with principal_tx(self.pool, principal) as conn:
            rows = await memories.recent_important(conn, sorted({scope, TENANT_WIDE_PROJECT}),
                                                  since, 3, 50)
        return [_memory(row) for row in rows]

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

    # --- validation -----------------------------------------------------------------------

    def resolve_project(self, principal: Principal, project: str | None) -> str:
        """An explicit project, else the key's project, else the caller's workspace (the
        repository its session runs in), else the configured default."""
        _check_project(project)
        if principal.project is not None:
            if project not in (None, principal.project):
                raise Forbidden(f"this key is limited to project {principal.project!r}")
            return principal.project
        if project is not None:
            return project
        _check_project(principal.workspace_project)
        return principal.workspace_project or self.settings.project

    def _check_content(self, content: str) -> str:
        content = check_text(content, "content")
        if not content.strip():
            raise InvalidInput("content is empty")
        if len(content) > self.settings.max_content_chars:
            raise InvalidInput(
                f"content is {len(content)} characters; the limit is "
                f"{self.settings.max_content_chars}: save the decision, not the document"
            )
        return content

    def _check_query(self, query: str) -> str:
        query = check_text(query, "query").strip()
        if not query:
            raise InvalidInput("query is empty")
        if len(query) > self.settings.max_query_chars:
            raise InvalidInput(f"query is longer than {self.settings.max_query_chars} characters")
        return query

    def _check_tags(self, tags: list[str]) -> tuple[list[str], list[str]]:
        """(tags, kinds of secrets found in them). A tag holding a secret becomes
        ``redacted:<kind>``; errors say which tag is wrong, never what it says (they reach
        the audit trail and the server log)."""
        if len(tags) > self.settings.max_tags:
            raise InvalidInput(f"at most {self.settings.max_tags} tags")
        redacted, kinds = redact_tags([check_text(tag, "tag") for tag in tags])
        cleaned = []
        for number, tag in enumerate(redacted, start=1):
            tag = tag.strip().lower()
            if not _TAG.match(tag) or len(tag) > self.settings.max_tag_chars:
                raise InvalidInput(
                    f"tag {number} of {len(tags)} must be 1-{self.settings.max_tag_chars} "
                    "characters of letters, digits and ._:/+-"
                )
            cleaned.append(tag)
        return sorted(set(cleaned)), kinds


_TAG = re.compile(r"^[\w][\w.:/+-]*$")




def check_text(value: str, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if "\x00" in value:
        raise InvalidInput(f"{name} contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInput(f"{name} is not valid Unicode text") from error
    return value


def _check_project(project: str | None) -> None:
    if project is not None and project != TENANT_WIDE_PROJECT \
            and not PROJECT_PATTERN.match(project):
        raise InvalidInput(
            "project must be 1-200 characters of letters, digits and ._:/@+- "
            "(or '*' for tenant-wide)"
        )


def _check_reason(reason: str) -> str:
    """A reason is stored in history and the audit trail: redacted like any other text."""
    reason = check_text(reason, "reason").strip()
    if not reason or len(reason) > 500:
        raise InvalidInput("reason must be 1-500 characters")
    return redact(reason).text


def _check_category(category: str) -> Category:
    try:
        return Category(category)
    except ValueError:
        allowed = ", ".join(c.value for c in Category)
        raise InvalidInput(f"unknown category; use one of: {allowed}") from None


def _check_importance(importance: int) -> int:
    if isinstance(importance, bool) or not isinstance(importance, int) \
            or not 1 <= importance <= 5:
        raise InvalidInput("importance must be an integer from 1 (trivia) to 5 (critical)")
    return importance


# Memories are not older than Unix time, and a year-1 time with a positive offset does not
# even convert to UTC: such times are refused the same way by every entry point.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def check_time(moment: datetime | None, name: str) -> datetime | None:
    """Times without a zone are UTC; times outside 1970-2999 are refused."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        in_range = _EARLIEST <= moment.astimezone(UTC) < _LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise InvalidInput(f"{name} must be a time between 1970 and 2999")
    return moment


def _check_source(source: str | None) -> tuple[str | None, list[str]]:
    """(source, kinds of secrets redacted from it)."""
    if source is None:
        return None, []
    source = check_text(source, "source")
    if len(source) > 200:
        raise InvalidInput("source must be at most 200 characters")
    cleaned = redact(source)
    return cleaned.text, cleaned.kinds


def _require_writer(principal: Principal) -> None:
    if principal.read_only:
        raise Forbidden("this API key is read-only")


def _statuses(include_history: bool) -> list[str]:
    chosen = ALL_STATUSES if include_history else CURRENT_STATUSES
    return [s.value for s in chosen if s is not MemoryStatus.FORGOTTEN]


def _not_current(row: MemoryRow) -> str:
    pointer = row.superseded_by or row.duplicate_of
    where = f" by {pointer}" if pointer else ""
    return (f"memory {row.id} is {row.status}{where}; "
            "pass include_history=true to read it anyway")


def _content(memory: Memory) -> str:
    return memory.content


def _age(now: datetime, then: datetime) -> str:
    return humanize_age(max(0.0, (now - then).total_seconds()))


def _hit(row: Candidate, score: float, now: datetime) -> MemoryHit:
    one_line = " ".join(row.content.split())
    snippet = one_line if len(one_line) <= _SNIPPET_CHARS else one_line[:_SNIPPET_CHARS - 1] + "…"
    return MemoryHit(
        id=row.id, project=row.project, category=Category(row.category),
        snippet=snippet, importance=row.importance, status=MemoryStatus(row.status),
        score=round(score, 6), age=_age(now, row.occurred_at),
        occurred_at=row.occurred_at, tokens=approx_tokens(row.content),
        truncated=snippet != one_line,
    )


def _memory(row: MemoryRow) -> Memory:
    return Memory.model_validate({**dict(row), "age": _age(datetime.now(UTC), row.occurred_at)})
