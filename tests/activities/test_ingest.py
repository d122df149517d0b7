"""commit_memory records one decision however many runs of it race (an activity retried after
a timeout while its first attempt still runs, a stalled worker's late run): the memory's row
is locked and must still be pending, so every run after the first changes nothing."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from activities.ingest import IngestActivities
from mcp_server.validation import prepare_memory
from team_memory_core.embedder import BatchingEmbedder
from team_memory_core.llm.client import Distiller
from team_memory_core.models.decisions import DecisionKind
from team_memory_core.models.memories import IngestInput, MemoryStatus
from team_memory_core.store import ingestion
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Stack
from tests.support.anthropic_server import FakeAnthropic

pytestmark = pytest.mark.anyio

RULE = "Database migrations run in a release step, never at application start"
NEWER = "Database migrations run in their own release step, never when the application starts"
MERGED = ("Database migrations run in their own release step before the rollout, never when "
          "the application starts")


def ingest_activities(stack: Stack, distiller: Distiller | None = None) -> IngestActivities:
    return IngestActivities(pool=stack.pool, settings=stack.settings, distiller=distiller,
                            embedder=BatchingEmbedder(stack.embedder, window_ms=1, max_batch=8))


async def saved_and_embedded(stack: Stack, steps: IngestActivities, content: str) -> IngestInput:
    """A saved memory as the workflow's first step leaves it (no worker runs here)."""
    item = prepare_memory(stack.settings, stack.principal, content, category="architecture")
    result = await stack.service.save(stack.principal, content, category="architecture")
    assert result.id == item.memory_id
    await steps.embed_memory(item)
    return item


async def history(stack: Stack) -> list[tuple[str, uuid.UUID]]:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        rows = await conn.fetch("SELECT event, memory_id FROM memory_events ORDER BY id")
    return [(row["event"], row["memory_id"]) for row in rows]


async def test_concurrent_commits_of_one_memory_record_one_decision(stack: Stack) -> None:
    steps = ingest_activities(stack)
    items = [await saved_and_embedded(stack, steps, f"Service {name} owns the {name} schema")
             for name in ("billing", "search", "accounts", "ledger", "mailer")]
    decisions = [await steps.decide_memory(item) for item in items]
    assert {decision.kind for decision in decisions} == {DecisionKind.ADD}

    results = await asyncio.gather(*(steps.commit_memory(item, decision)
                                      for item, decision in zip(items, decisions, strict=True)
                                      for _ in range(2)))

    assert {result.status for result in results} == {MemoryStatus.ACTIVE}
    assert sorted(await history(stack)) == sorted(("added", item.memory_id) for item in items)


async def test_concurrent_commits_apply_the_models_merge_once(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller
) -> None:
    steps = ingest_activities(stack, distiller)
    rule = await saved_and_embedded(stack, steps, RULE)
    # The project's first memory: no neighbour, only its injection screening.
    await steps.commit_memory(rule, await steps.decide_memory(rule))
    newer = await saved_and_embedded(stack, steps, NEWER)
    fake.script(FakeAnthropic.tool_result({
        "action": "UPDATE", "target_id": str(rule.memory_id), "merged_content": MERGED,
        "reason": "The same rule, stated more precisely."}))
    merge = await steps.decide_memory(newer)
    assert (merge.kind, merge.target_id) == (DecisionKind.UPDATE, rule.memory_id)

    results = await asyncio.gather(steps.commit_memory(newer, merge),
                                   steps.commit_memory(newer, merge))

    assert [result.status for result in results] == [MemoryStatus.DUPLICATE] * 2
    assert await history(stack) == [("added", rule.memory_id), ("merged", rule.memory_id),
                                    ("merged_into", newer.memory_id)]
    target = await stack.service.get(stack.principal, rule.memory_id)
    assert target.content == MERGED
    assert target.merged_from == [newer.memory_id]
    assert [c.forced_tool for c in fake.conversations] == ["record_screening",
                                                           "record_ingest_decision"]


async def test_concurrent_one_step_ingestions_record_one_decision(stack: Stack) -> None:
    """ingest_memory (embed, decide and commit in one step when the rules decide alone, the
    common path) run twice at once on each of five memories."""
    steps = ingest_activities(stack)
    texts = [f"Service {name} deploys with its own pipeline"
             for name in ("billing", "search", "accounts", "ledger", "mailer")]
    items = [prepare_memory(stack.settings, stack.principal, text, category="architecture")
             for text in texts]
    for text in texts:
        await stack.service.save(stack.principal, text, category="architecture")

    results = await asyncio.gather(*(steps.ingest_memory(item) for item in items
                                     for _ in range(2)))

    assert all(result is not None for result in results)
    assert {result.status for result in results if result is not None} == {MemoryStatus.ACTIVE}
    assert sorted(await history(stack)) == sorted(("added", item.memory_id) for item in items)


async def test_a_memory_forgotten_before_its_ingestion_is_not_brought_back(
        stack: Stack) -> None:
    """The one-statement commit of an add activates only a pending row: a forget that came
    first stays, with no event of the ingestion."""
    steps = ingest_activities(stack)
    text = "Service billing rotates its signing keys every quarter"
    item = prepare_memory(stack.settings, stack.principal, text, category="architecture")
    await stack.service.save(stack.principal, text, category="architecture")
    await stack.service.forget(stack.principal, item.memory_id, "saved by mistake")
    events = await history(stack)

    result = await steps.ingest_memory(item)

    assert result is not None and result.status is MemoryStatus.FORGOTTEN
    assert await history(stack) == events


async def test_the_neighbours_are_read_after_the_active_model_is_locked(stack: Stack) -> None:
    """One statement reads the active model (locking memories against a re-embed's switch)
    and the neighbours: the function must run first, the neighbours' query inside it."""
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        plan = [row[0] for row in await conn.fetch(
            "EXPLAIN (COSTS OFF) " + ingestion.SIMILAR_CURRENT_OF_MODEL,
            np.zeros(stack.embedder.dim, dtype=np.float32), uuid.uuid4(), "p", 5, None)]
    assert plan[0].startswith("Nested Loop Left Join"), plan
    outer = next(line for line in plan[1:] if line.strip().startswith("->"))
    assert "Function Scan on active_embedding_model" in outer, plan
