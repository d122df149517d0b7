"""A cluster review records one decision however many runs of it race: the run that locks the
cluster second finds it reviewed and applies nothing, whatever its model answered."""

from __future__ import annotations

import asyncio
import uuid

import anyio
import pytest

from activities.consolidate import ConsolidationActivities
from team_memory_core.embedder import BatchingEmbedder
from team_memory_core.llm.client import Distiller
from team_memory_core.models.consolidation import ClusterRequest
from team_memory_core.models.memories import MemoryStatus
from tests.activities.test_ingest import history
from tests.conftest import Stack
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import calls_but_screenings

pytestmark = pytest.mark.anyio


async def test_concurrent_reviews_of_one_cluster_apply_one_plan(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller
) -> None:
    async with stack.worker(distiller=distiller):
        kept = await stack.service.save(stack.principal, "The public API answers in JSON only")
        assert await stack.wait_status(kept.id) is MemoryStatus.ACTIVE  # the live neighbour
        fake.script(FakeAnthropic.text("I cannot decide."))  # kept, flagged for the review
        flagged = await stack.service.save(stack.principal, "Our public API answers only JSON")
        assert await stack.wait_status(flagged.id) is MemoryStatus.ACTIVE
    assert calls_but_screenings(fake) == 1, "the second memory was not flagged: nothing to review"
    # Two answers that disagree; each run gets one, in whichever order they ask.
    fake.script(
        FakeAnthropic.held(FakeAnthropic.tool_result({"actions": []})),
        FakeAnthropic.held(FakeAnthropic.tool_result({"actions": [{
            "action": "SUPERSEDE", "old_id": str(kept.id), "new_id": str(flagged.id),
            "reason": "The newer wording replaces the older."}]})))
    review = ConsolidationActivities(
        pool=stack.pool, settings=stack.settings, client=stack.client, distiller=distiller,
        embedder=BatchingEmbedder(stack.embedder, window_ms=1, max_batch=8))
    request = ClusterRequest(run_id=uuid.uuid4(), tenant_id=stack.principal.tenant_id,
                             project="default", ids=[kept.id, flagged.id], tokens_left=100_000)

    runs = asyncio.gather(review.review_cluster(request), review.review_cluster(request))
    with anyio.fail_after(30):
        while calls_but_screenings(fake) < 3:  # the ingest decision, then both reviews
            await anyio.sleep(0.02)
    fake.release()
    outcomes = await runs

    applied = [outcome for outcome in outcomes if outcome.reviewed]
    assert len(applied) == 1 and applied[0].revisited == 1
    events = [event for event, _ in await history(stack)]
    assert events.count("revisited") == 1
    assert events.count("superseded") == applied[0].superseded
