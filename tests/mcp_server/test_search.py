"""Ranking behaviour of search_memory on real PostgreSQL: hybrid relevance, boosts, filters,
scoping, complete filtered vector search, and the working set."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from mcp_server.memories import MemoryService
from mcp_server.search.recall import PENDING_EMBED_PER_SEARCH
from team_memory_core.embedder import Embedder
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.store.memories import erase_memories
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.search import PendingVectors, SearchFilters, vector_candidates
from tests.conftest import Services, Stack, new_tenant

pytestmark = pytest.mark.anyio

FACTS = [
    "We use UUID v7 for all primary keys in PostgreSQL",
    "Production deploys only happen on Tuesdays and Thursdays",
    "The payment service retries failed webhooks with exponential backoff",
    "Error code QX-7731 means the upstream ledger rejected the batch",
    "Frontend components are written in Svelte with TypeScript",
]


async def save_all(stack: Stack, facts: list[str], **options: object) -> list[uuid.UUID]:
    ids = []
    for fact in facts:
        saved = await stack.service.save(stack.principal, fact, **options)  # type: ignore[arg-type]
        ids.append(saved.id)
    return ids


async def committed(stack: Stack, ids: list[uuid.UUID]) -> None:
    for memory_id in ids:
        assert await stack.wait_status(memory_id) is MemoryStatus.ACTIVE


async def top(stack: Stack, query: str, **options: object) -> list[uuid.UUID]:
    hits = await stack.service.search(stack.principal, query, **options)  # type: ignore[arg-type]
    return [h.id for h in hits]


async def test_keyword_only_match_is_found(running: Stack) -> None:
    ids = await save_all(running, FACTS)
    await committed(running, ids)
    assert (await top(running, "QX-7731"))[0] == ids[3]


async def test_paraphrase_with_no_shared_word_is_found(running: Stack) -> None:
    ids = await save_all(running, FACTS)
    await committed(running, ids)
    assert (await top(running, "Which UI framework renders the client side?"))[0] == ids[4]


async def test_newer_beats_older_when_equally_relevant(stack: Stack) -> None:
    """No worker: both stay pending (no dedupe), equally relevant by construction."""
    old = await stack.service.save(stack.principal, "The release freeze starts on Friday",
                                   occurred_at=datetime.now(UTC) - timedelta(days=400))
    new = await stack.service.save(stack.principal, "Release freeze starts on Friday")
    assert await top(stack, "when does the release freeze start", limit=2) == [new.id, old.id]


async def test_importance_breaks_ties(stack: Stack) -> None:
    when = datetime.now(UTC) - timedelta(days=3)
    low = await stack.service.save(stack.principal, "The release freeze starts on Friday",
                                   importance=1, occurred_at=when)
    high = await stack.service.save(stack.principal, "Release freeze starts on Friday",
                                    importance=5, occurred_at=when)
    assert await top(stack, "when does the release freeze start", limit=2) == [high.id, low.id]


async def test_every_filter(stack: Stack) -> None:
    now = datetime.now(UTC)
    s = stack.service
    p = stack.principal
    bug = await s.save(p, "Login fails when the session cookie is too large", category="bugfix",
                       tags=["auth"], occurred_at=now - timedelta(days=10))
    rule = await s.save(p, "Login sessions expire after twelve hours", category="business_rule",
                        tags=["auth", "policy"], occurred_at=now - timedelta(days=2))
    other = await s.save(p, "Login page uses the brand colours", category="preference",
                         tags=["ui"], occurred_at=now)
    query = "login"
    assert await top(stack, query, category="bugfix") == [bug.id]
    assert set(await top(stack, query, tags=["auth"])) == {bug.id, rule.id}
    assert set(await top(stack, query, since=now - timedelta(days=5))) == {rule.id, other.id}
    assert await top(stack, query, until=now - timedelta(days=5)) == [bug.id]
    assert await top(stack, query, since=now - timedelta(days=5),
                     until=now - timedelta(days=1)) == [rule.id]
    await s.forget(p, other.id, "obsolete")
    assert other.id not in await top(stack, query)
    assert other.id not in await top(stack, query, include_history=True)


async def test_include_history_returns_a_duplicate(running: Stack) -> None:
    s, p = running.service, running.principal
    first = await s.save(p, "We deploy the API with blue-green deployments on Kubernetes")
    await committed(running, [first.id])
    second = await s.save(p, "We deploy the API with blue/green deployments on Kubernetes!")
    assert await running.wait_status(second.id) is MemoryStatus.DUPLICATE
    assert await top(running, "how is the API deployed") == [first.id]
    assert set(await top(running, "how is the API deployed", include_history=True)) == {
        first.id, second.id}


async def test_project_and_tenant_scoping(stack: Stack, admin_pool: asyncpg.Pool) -> None:
    s, p = stack.service, stack.principal
    here = await s.save(p, "Invoices are numbered per fiscal year", project="billing")
    everywhere = await s.save(p, "Invoices are always sent as PDF", project="*")
    elsewhere = await s.save(p, "Invoices are archived for ten years", project="archive")
    other_tenant, _ = await new_tenant(admin_pool)
    foreign = await s.save(other_tenant, "Invoices are numbered per fiscal year",
                           project="billing")
    found = set(await top(stack, "invoices", project="billing"))
    assert found == {here.id, everywhere.id}
    assert elsewhere.id not in found and foreign.id not in found
    assert set(await top(stack, "invoices", project="archive")) == {elsewhere.id,
                                                                    everywhere.id}


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


async def _bulk_rows(pool: asyncpg.Pool, tenant_id: uuid.UUID, project: str, count: int,
                     rng: np.random.Generator) -> None:
    rows = [(uuid.uuid4(), tenant_id, project, f"row {i} of {project}", uuid.uuid4().hex,
             _unit(rng, 384)) for i in range(count)]
    async with tenant_tx(pool, tenant_id) as conn:
        await conn.executemany(
            "INSERT INTO memories (id, tenant_id, project, content, category, content_hash,"
            " embedding, status) VALUES ($1, $2, $3, $4, 'general', $5, $6, 'active')", rows)


async def test_filtered_vector_search_returns_limit_rows(
    services: Services, stack: Stack, admin_pool: asyncpg.Pool,
) -> None:
    """Most rows belong to another tenant, so the HNSW pass alone (which filters after the
    index) comes back short; the retriever must still return `limit` rows."""
    rng = np.random.default_rng(7)
    crowd, _ = await new_tenant(admin_pool)
    await _bulk_rows(admin_pool, crowd.tenant_id, "default", 1500, rng)
    await _bulk_rows(admin_pool, stack.principal.tenant_id, "default", 40, rng)
    # HNSW always, and no neighbours: every hit is a vector candidate (no word matches).
    service = MemoryService(settings=services.settings(exact_search_max_rows=0, neighbour_count=0),
                            pool=stack.pool, temporal=stack.client, embedder=stack.embedder)
    filters = SearchFilters(projects=["*", "default"], statuses=["active"])
    query = _unit(rng, 384)
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        await conn.execute("SET LOCAL enable_sort = off")  # make the planner use the index
        hnsw_only = await vector_candidates(conn, query, filters, 30, exact=False,
                                            ef_search=40)
        rows = await service.retriever.candidates(
            conn, "zzz", query, filters, PendingVectors(ids=[], vectors=[]))
        exact = await vector_candidates(conn, query, filters, 40, exact=True)
    assert len(hnsw_only) < 30
    assert {r.id for r in rows} == set(exact) and len(exact) == 40
    hits = await service.search(stack.principal, "anything at all", limit=30)
    assert len(hits) == 30


async def test_working_set_respects_budget_and_ranks_importance(stack: Stack) -> None:
    s, p = stack.service, stack.principal
    critical = await s.save(p, "Never run migrations by hand on production", importance=5)
    await s.save(p, "The office plant is watered on Mondays " * 20, importance=1)
    small = await s.save(p, "Use ruff for linting", importance=3)
    current = await s.working_set(p, budget_tokens=40)
    assert [m.id for m in current.memories] == [critical.id, small.id]
    assert current.tokens <= 40 and current.budget_tokens == 40
    focused = await s.working_set(p, query="linting tools", budget_tokens=40)
    assert focused.memories[0].id == small.id


Stats = tuple[set[tuple[str, str, int]], set[tuple[str, int, int]]]


async def _recount(conn: asyncpg.Connection) -> Stats:
    """The trigger-kept BM25 statistics, checked against a count from scratch."""
    fresh = await conn.fetch(
        "SELECT m.project, l.lexeme, count(*) AS docs FROM memories m, unnest(m.search_text) l"
        " WHERE m.status = 'active' GROUP BY 1, 2")
    kept = await conn.fetch("SELECT project, lexeme, docs FROM memory_lexemes")
    fresh_scopes = await conn.fetch(
        "SELECT project, count(*) AS docs, sum(length(search_text)) AS lexemes FROM memories"
        " WHERE status = 'active' GROUP BY 1")
    kept_scopes = await conn.fetch(
        "SELECT project, docs, lexemes FROM memory_scopes WHERE docs > 0")
    assert {tuple(r) for r in kept} == {tuple(r) for r in fresh}
    assert {tuple(r) for r in kept_scopes} == {tuple(r) for r in fresh_scopes}
    return {tuple(r) for r in kept}, {tuple(r) for r in kept_scopes}


async def test_search_statistics_follow_every_change(
    stack: Stack, admin_pool: asyncpg.Pool,
) -> None:
    """memory_lexemes / memory_scopes (trigger-maintained) always equal a recount of the active
    memories: inserts, activation, supersession, edits, no-op updates, purge and delete."""
    tenant = stack.principal.tenant_id
    ids = [uuid.uuid4() for _ in range(5)]
    texts = ["Deploys use blue green switching", "The ledger batches settle nightly",
             "Blue dashboards page the on-call", "Zanzibarite tokens rotate hourly",
             "Settlement retries back off"]
    async with tenant_tx(stack.pool, tenant) as conn:
        await conn.executemany(
            "INSERT INTO memories (id, tenant_id, project, content, category, content_hash,"
            " status) VALUES ($1, $2, $3, $4, 'general', $5, $6)",
            [(ids[n], tenant, "default" if n < 4 else "*", text, uuid.uuid4().hex,
              "pending" if n == 4 else "active") for n, text in enumerate(texts)])
        await _recount(conn)
        await conn.execute("UPDATE memories SET status = 'active' WHERE id = $1", ids[4])
        await conn.execute("UPDATE memories SET status = 'superseded' WHERE id = $1", ids[1])
        await conn.execute("UPDATE memories SET content = 'Deploys use canary releases'"
                           " WHERE id = $1", ids[0])
        await conn.execute("UPDATE memories SET importance = 4 WHERE id = ANY($1::uuid[])", ids)
        await erase_memories(conn, [ids[3]])
        lexemes, scopes = await _recount(conn)
    assert not any(lexeme.startswith("zanzibarit") for _, lexeme, _ in lexemes)
    assert {("default", 2), ("*", 1)} == {(project, docs) for project, docs, _ in scopes}
    async with admin_pool.acquire() as conn:
        await conn.execute("DELETE FROM memories WHERE id = $1", ids[2])
    async with tenant_tx(stack.pool, tenant) as conn:
        await _recount(conn)
        assert await conn.fetchval("SELECT docs FROM memory_scopes WHERE project = 'default'") == 1
        assert await conn.fetchval("SELECT count(*) FROM memory_lexemes WHERE docs <= 0") == 0


class CountingEmbedder:
    """The real model, counting the texts it embeds."""

    def __init__(self, model: Embedder) -> None:
        self.model = model
        self.name, self.dim = model.name, model.dim
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.model.embed(texts)


async def test_each_pending_memory_is_embedded_once_and_still_found_by_meaning(
    stack: Stack
) -> None:
    """No worker runs: the memories stay pending; searches after the first embed only the
    query and the memories saved since."""
    counting = CountingEmbedder(stack.embedder)
    service = MemoryService(settings=stack.settings, pool=stack.pool, temporal=stack.client,
                            embedder=counting)
    ids = [(await service.save(stack.principal, fact)).id for fact in FACTS[:4]]
    question = "Which UI framework renders the client side?"
    first = await service.search(stack.principal, "When may we ship to production?")
    embedded_first = len(counting.texts)
    second = await service.search(stack.principal, "Which ids do the database rows get?")
    embedded_second = len(counting.texts) - embedded_first
    ids.append((await service.save(stack.principal, FACTS[4])).id)
    third = await service.search(stack.principal, question)
    assert (first[0].id, second[0].id, third[0].id) == (ids[1], ids[0], ids[4])
    assert embedded_first == 1 + 4 and embedded_second == 1
    assert counting.texts[embedded_first + embedded_second:] == [question, FACTS[4]]


async def test_a_purged_pending_memory_is_not_found_by_its_old_meaning(stack: Stack) -> None:
    saved = await stack.service.save(stack.principal, FACTS[4])
    question = "Which UI framework renders the client side?"
    assert await top(stack, question) == [saved.id]
    assert len(stack.service.pending_vectors) == 1
    await stack.service.purge(stack.principal, saved.id, "pasted by mistake")
    assert len(stack.service.pending_vectors) == 0
    assert await top(stack, question) == []


async def test_a_backlog_of_pending_memories_is_embedded_once_a_few_per_search(
    stack: Stack,
) -> None:
    """No worker (Temporal down, say): ten memories stay pending and searchable, and each
    search embeds its query and at most PENDING_EMBED_PER_SEARCH of them."""
    model = CountingEmbedder(stack.embedder)
    service = MemoryService(settings=stack.settings, pool=stack.pool,
                            temporal=stack.client, embedder=model)
    ids = await save_all(stack, FACTS + [f"Team {n} reviews the on-call runbook monthly"
                                         for n in range(5)])
    embedded = []
    for query, wanted in [("When do production deploys happen?", ids[1]),
                          ("Which error means the ledger said no?", ids[3]),
                          ("How are failed webhooks retried?", ids[2]),
                          ("Which UI framework renders Svelte components?", ids[4])]:
        hits = await service.search(stack.principal, query)
        assert hits[0].id == wanted
        embedded.append(len(model.texts))
        model.texts.clear()
    left, expected = len(ids), []
    for _ in embedded:  # the query, and as many not embedded yet as a search may take
        expected.append(1 + min(left, PENDING_EMBED_PER_SEARCH))
        left -= min(left, PENDING_EMBED_PER_SEARCH)
    assert embedded == expected and expected[-1] == 1
