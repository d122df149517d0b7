"""Ranking behaviour of search_memory on real PostgreSQL: hybrid relevance, boosts, filters,
scoping, complete filtered vector search, and the working set."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from mcp_server.service import MemoryService
from team_memory import queries
from team_memory.db import tenant_tx
from team_memory.models import MemoryStatus
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
    service = MemoryService(settings=services.settings(exact_search_max_rows=0),
                            pool=stack.pool, temporal=stack.client, embedder=stack.embedder)
    filters = queries.SearchFilters(projects=["*", "default"], statuses=["active"])
    query = _unit(rng, 384)
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        await conn.execute("SET LOCAL enable_sort = off")  # make the planner use the index
        hnsw_only = await queries.vector_candidates(conn, query, filters, 30, exact=False,
                                                    ef_search=40)
        stats = await service.retriever.scope_stats(conn, stack.principal.tenant_id,
                                                    filters.projects)
        complete = await service.retriever.nearest(conn, query, filters, stats, 30)
        exact = await queries.vector_candidates(conn, query, filters, 30, exact=True)
    assert len(hnsw_only) < 30
    assert complete == exact and len(complete) == 30
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
