"""The read path of the use cases: hybrid search and the working set, THE relevance x
importance x recency rule packed into a token budget, which every reader (the search tool,
memory://working_set, the Claude Code session context) goes through."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import numpy as np

from mcp_server.errors import InvalidInput
from mcp_server.search.pending import PendingVectorCache
from mcp_server.search.retriever import Retriever
from mcp_server.validation import (
    check_category,
    check_limit,
    check_period,
    check_query,
    check_tags,
    resolve_project,
    statuses,
)
from team_memory_core import telemetry
from team_memory_core.active_model import ActiveModel
from team_memory_core.embedder import QUERY_TUNING, Embedder, embed_async
from team_memory_core.models.anchors import Anchor, Freshness
from team_memory_core.models.memories import (
    TENANT_WIDE_PROJECT,
    Category,
    Memory,
    MemoryHit,
    MemoryStatus,
    Origin,
    ScoreParts,
    WorkingSet,
    humanize_age,
    scope_of,
)
from team_memory_core.models.principal import Principal
from team_memory_core.rules.ranking import Score
from team_memory_core.rules.text import approx_tokens, one_line, within_budget
from team_memory_core.settings import Settings
from team_memory_core.store import anchors, memories, search
from team_memory_core.store.memories import MemoryRow
from team_memory_core.store.pool import principal_tx
from team_memory_core.store.search import Candidate, SearchFilters

SNIPPET_CHARS = 160
# Acknowledged memories the worker has not embedded yet take part in the vector search with
# vectors the server makes (search/pending.py: each embedded once per process), so that a save
# is found by meaning the moment it returns (by its words it is found anyway: the full-text
# index has it at once). Of the newest this many,
PENDING_EMBED_LIMIT = 64
# a search embeds at most this many itself, newest first; the vectors are kept in the process
# for later searches. So a backlog (Temporal down, the worker behind, a burst of saves) costs
# a search a bounded amount of work, and is embedded once, not by every search.
PENDING_EMBED_PER_SEARCH = 4


@dataclass
class Recall:
    settings: Settings
    pool: asyncpg.Pool
    embedder: Embedder
    retriever: Retriever = field(init=False)
    pending_vectors: PendingVectorCache = field(init=False)
    model: ActiveModel = field(init=False)

    def __post_init__(self) -> None:
        self.retriever = Retriever(self.settings)
        self.pending_vectors = PendingVectorCache()
        # Queries are embedded with the database's active model, followed across a re-embed.
        self.model = ActiveModel.wrapping(self.embedder, self.settings, QUERY_TUNING)

    def resolve_project(self, principal: Principal, project: str | None) -> str:
        return resolve_project(self.settings, principal, project)

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
        explain: bool = False,
    ) -> list[MemoryHit]:
        """Hybrid search (docs/retrieval.md): BM25 and vector candidates, neighbour context,
        importance and recency boosts; the current project plus tenant-wide memories (and the
        caller's own personal ones). ``explain``: each hit with its score's parts."""
        query = check_query(self.settings, query)
        limit = check_limit(self.settings, limit)
        filters = self.filters(principal, project, category, tags, since, until,
                               include_history)
        now = datetime.now(UTC)
        ranked = await self.ranked(principal, query, filters, now, limit)
        return [memory_hit(row, parts, now, explain) for row, parts in ranked[:limit]]

    async def ranked(self, principal: Principal, query: str, filters: SearchFilters,
                     now: datetime, limit: int) -> list[tuple[Candidate, Score]]:
        """The search's candidates with their scores, best first (checked input)."""
        used = self.model.current
        # The query is embedded on a thread while the statement that needs no vector runs.
        embedding = asyncio.ensure_future(embed_async(used, [query], queries=True))
        try:
            async with search.search_transaction(
                    self.pool, principal, query, filters, PENDING_EMBED_LIMIT,
                    self.retriever.per_side(limit)) as (conn, prelude):
                # Every vector of this search is of the model of the columns it reads (a
                # re-embed switches before this transaction starts or after it ends).
                model = await self.model.following(prelude.models)
                hybrid = self.retriever.hybrid_query(prelude.terms, limit=limit)
                query_vector = (await embedding)[0] if model is used \
                    else (await embed_async(model, [query], queries=True))[0]
                return await self.retriever.rank(
                    conn, query_vector, filters, hybrid,
                    await self.pending_vectors.vectors(model, prelude.pending,
                                                       PENDING_EMBED_PER_SEARCH),
                    now,
                )
        finally:
            _forget(embedding)

    async def working_set(
        self, principal: Principal, project: str | None = None, query: str | None = None,
        budget_tokens: int | None = None, text_of: Callable[[Memory], str] | None = None,
    ) -> WorkingSet:
        """The memories that matter most now, in full, within a token budget. With a query,
        ranked by relevance x importance x recency (the search score); without, by importance
        x recency. Best first; a memory too large for what is left is skipped, not cut, and
        one whose files are all gone is left out (docs/freshness.md); memories about files
        come with their anchors. ``text_of`` is how each memory will be rendered (its cost
        against the budget). A memory flagged as aimed at AI agents is never part of it: the
        working set is put before a model unasked (session start, docs/security.md)."""
        budget = self.settings.working_set_tokens if budget_tokens is None else budget_tokens
        if budget < 0:
            raise InvalidInput("budget_tokens must not be negative")
        render = text_of or _content
        scope = self.resolve_project(principal, project)
        if query is not None and query.strip():
            hits = await self.search(principal, query, project=project,
                                     limit=self.settings.search_limit_max)
            ranked = await self._current(principal, [hit.id for hit in hits])
        else:
            ranked = await self._important_recent(principal, project)
        ranked = await self.with_files(principal, [
            m for m in ranked if m.freshness != Freshness.GONE and not m.injection_flags])
        chosen = within_budget(ranked, render, budget)
        return WorkingSet(project=scope, budget_tokens=budget, memories=chosen,
                          tokens=sum(approx_tokens(render(m)) for m in chosen))

    async def with_files(self, principal: Principal,
                         found: Sequence[Memory]) -> list[Memory]:
        """These memories, those about files with their anchors."""
        anchored = [m.id for m in found if m.freshness is not None]
        if not anchored:
            return list(found)
        async with principal_tx(self.pool, principal) as conn:
            files = await anchors.anchors_of(conn, anchored)
        return [m.model_copy(update={"anchors": files[m.id]}) if m.id in files else m
                for m in found]

    async def _current(self, principal: Principal, ids: list[UUID]) -> list[Memory]:
        """These memories in this order, those still current (one may change meanwhile)."""
        if not ids:
            return []
        async with principal_tx(self.pool, principal) as conn:
            rows = {row.id: row for row in await memories.get_memories(conn, ids)}
        current = statuses(include_history=False)
        return [memory_view(rows[i]) for i in ids if i in rows and rows[i].status in current]

    async def _important_recent(self, principal: Principal, project: str | None) -> list[Memory]:
        filters = self.filters(principal, project, None, None, None, None, False)
        weights = self.retriever.weights()
        async with principal_tx(self.pool, principal) as conn:
            rows = await search.important_recent(
                conn, filters, weights.importance_boost, weights.recency_weight,
                weights.half_life_days, 4 * self.settings.search_limit_max,
            )
        return [memory_view(row) for row in rows]

    def filters(
        self, principal: Principal, project: str | None, category: str | None,
        tags: list[str] | None, since: datetime | None, until: datetime | None,
        include_history: bool,
    ) -> SearchFilters:
        scope = self.resolve_project(principal, project)
        since, until = check_period(since, until)
        return SearchFilters(
            projects=sorted({scope, TENANT_WIDE_PROJECT}),
            statuses=statuses(include_history),
            category=None if category is None else check_category(category),
            tags=check_tags(self.settings, tags)[0] if tags else None,
            since=since,
            until=until,
        )


def _forget(task: asyncio.Future[np.ndarray]) -> None:
    """Let go of an embedding the search no longer waits for (it failed or was not needed):
    cancelled if still running, its outcome read so that nothing is logged as lost."""
    task.cancel()
    if task.done() and not task.cancelled():
        task.exception()


def memory_hit(row: Candidate, parts: Score, now: datetime,
               explain: bool = False) -> MemoryHit:
    snippet = one_line(row.content, SNIPPET_CHARS)
    return MemoryHit(
        id=row.id, project=row.project, category=Category(row.category),
        snippet=snippet, importance=row.importance, status=MemoryStatus(row.status),
        score=round(parts.total, 6), age=age(now, row.occurred_at),
        occurred_at=row.occurred_at, tokens=approx_tokens(row.content),
        truncated=snippet != one_line(row.content),
        freshness=None if row.freshness is None else Freshness(row.freshness),
        injection_flags=row.injection_flags,
        author=row.author, origin=Origin(row.origin), origin_session=row.origin_session,
        scope=scope_of(row.project, row.private_to),
        explain=_rounded(parts) if explain else None,
    )


def _rounded(parts: Score) -> ScoreParts:
    return ScoreParts(**{name: round(value, 6) for name, value in parts._asdict().items()})


def memory_view(row: MemoryRow, files: Sequence[Anchor] = ()) -> Memory:
    return Memory.model_validate({**dict(row), "age": age(datetime.now(UTC), row.occurred_at),
                                  "anchors": list(files)})


def age(now: datetime, then: datetime) -> str:
    return humanize_age(max(0.0, (now - then).total_seconds()))


def _content(memory: Memory) -> str:
    return memory.content
