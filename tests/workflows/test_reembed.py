"""Re-embedding every memory with another model (ReembedMemories), on a database of its own:
searches running throughout never fail and never mix the two models, saves made meanwhile end
up with the new model's vector, the dimension changes, and a worker restart resumes the run.

The second model is the bundled all-MiniLM-L6-v2 cut to 128 dimensions: a real model
configuration whose vectors differ from the 384-dimension ones in dimension and in value."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import numpy as np
import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from mcp_server.memories import MemoryService
from team_memory_core.active_model import ActiveModel, ModelChanged
from team_memory_core.embedder import BUNDLED_MODEL, Embedder, EmbeddingModel, LocalEmbedder
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from team_memory_core.models.reembed import Phase, ReembedProgress
from team_memory_core.reembed import reembed_status, start_reembed
from team_memory_core.store import embeddings
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Services
from tests.support.reembed import OwnDatabase, memory_text, own_database
from workflows.reembed import ReembedMemories
from workflows.worker import running_worker

pytestmark = pytest.mark.anyio

NEW_MODEL = EmbeddingModel("local", BUNDLED_MODEL, 128)
TOLERANCE = 2e-3  # cosine as PostgreSQL computes it (float4) against numpy's


@pytest.fixture(scope="module")
def new_embedder(services: Services) -> Embedder:
    return LocalEmbedder(services.data_dir / "models", BUNDLED_MODEL, dim=128)


@pytest.fixture
async def database(services: Services) -> AsyncIterator[OwnDatabase]:
    async with own_database(services) as own:
        yield own


@contextlib.asynccontextmanager
async def reembedding(db: OwnDatabase, embedder: Embedder,
                      page_size: int) -> AsyncIterator[WorkflowHandle[object, ReembedProgress]]:
    handle = await start_reembed(db.client, db.settings, NEW_MODEL, page_size=page_size)
    try:
        yield handle
    finally:
        with contextlib.suppress(Exception):  # ended already (the usual case)
            await handle.terminate("test over")


@dataclass
class Searches:
    """Searches run back to back; each result set with the cosines PostgreSQL computed."""

    service: MemoryService
    principal: Principal
    texts: list[str]
    results: list[tuple[str, list[tuple[uuid.UUID, float]]]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)

    async def one(self, query: str) -> None:
        filters = self.service.filters(self.principal, "alpha", None, None, None, None, False)
        try:
            ranked = await self.service.ranked(self.principal, query, filters,
                                               datetime.now(UTC), 10)
        except Exception as error:  # every failure is a finding
            self.failures.append(error)
            return
        self.results.append((query, [(row.id, row.cosine) for row, _ in ranked[:10]]))

    async def until(self, done: asyncio.Event) -> None:
        rng = random.Random(7)
        while not done.is_set():
            await self.one(rng.choice(self.texts))
            await asyncio.sleep(0.05)  # leave the two cores some room for the re-embed


@dataclass
class Models:
    """Each model's vector of every text, to recompute the cosines of a result set."""

    vectors: dict[str, dict[str, np.ndarray]]

    @classmethod
    def of(cls, models: dict[str, Embedder], texts: list[str]) -> Models:
        return cls({name: dict(zip(texts, model.embed(texts), strict=True))
                    for name, model in models.items()})

    def matching(self, query: str, hits: list[tuple[uuid.UUID, float]],
                 texts: dict[uuid.UUID, str]) -> set[str]:
        """The models whose cosines are those the search returned, for every hit of the set
        that had a vector (a memory saved a moment ago may have none yet: cosine 0)."""
        scored = [(texts[memory_id], cosine) for memory_id, cosine in hits if cosine != 0.0]
        found = set()
        for name, vectors in self.vectors.items():
            expected = [float(vectors[text] @ vectors[query]) for text, _ in scored]
            if np.allclose([cosine for _, cosine in scored], expected, atol=TOLERANCE):
                found.add(name)
        return found


async def test_reembed_switches_while_searches_and_saves_go_on(
        database: OwnDatabase, embedder: Embedder, new_embedder: Embedder) -> None:
    db = database
    first, second = await db.tenant(), await db.tenant()
    texts = {**await db.seed(first, embedder, 0, 160), **await db.seed(second, embedder, 160, 80)}
    service = db.service(embedder)
    searches = Searches(service, first, [t for t in texts.values()][:160:2])
    saved: list[uuid.UUID] = []
    done = asyncio.Event()
    await searches.one(searches.texts[0])  # before the re-embed starts: the old model

    async def save_meanwhile() -> None:
        for i in range(12):
            result = await service.save(first, memory_text(1000 + i), project="alpha")
            saved.append(result.id)
            await asyncio.sleep(0.2)

    async with running_worker(db.client, db.settings, db.pool, embedder, None), \
            reembedding(db, embedder, page_size=20) as handle:
        searching = asyncio.create_task(searches.until(done))
        await save_meanwhile()
        with anyio.fail_after(240):
            final = await handle.result()
        await searches.one(searches.texts[1])  # after: the new model
        done.set()
        await searching
        for memory_id in saved:
            with anyio.fail_after(30):
                while (await service.status(first, memory_id)).status == MemoryStatus.PENDING:
                    await asyncio.sleep(0.05)

    assert searches.failures == []
    texts.update({memory_id: memory_text(1000 + i) for i, memory_id in enumerate(saved)})
    models = Models.of({"old": embedder, "new": new_embedder}, list(texts.values()))
    used = [models.matching(query, hits, texts) for query, hits in searches.results]
    # Each result set is wholly of one model: every cosine is that model's (the two models'
    # cosines of a pair of different texts differ by far more than the tolerance; a set of
    # the query's own memory alone, cosine 1 with both, would match both).
    assert all(used), [(query, hits) for (query, hits), found
                       in zip(searches.results, used, strict=True) if not found]
    assert used[0] == {"old"} and used[-1] == {"new"}
    assert final.phase is Phase.DONE and final.generation == 1
    assert final.embedded >= final.total >= 240

    # Every memory, seeded or saved during the run, has the new model's vector of its text.
    stored = await db.vectors()
    assert len(stored) == 240 + len(saved)
    contents = [content for content, _ in stored.values()]
    expected = new_embedder.embed(contents)
    for (content, vector), wanted in zip(stored.values(), expected, strict=True):
        assert vector is not None and vector.shape == (128,), content
        assert float(np.dot(vector, wanted)) > 1 - TOLERANCE, content
    assert await db.embedding_column() == ["embedding vector(128)"]
    async with db.pool.acquire() as conn:
        records = await embeddings.model_records(conn)
    assert [(r.generation, r.dim, r.state) for r in records] == [
        (0, 384, "retired"), (1, 128, "active")]


async def test_a_worker_restarted_mid_run_goes_on_from_its_last_page(
        database: OwnDatabase, embedder: Embedder, new_embedder: Embedder) -> None:
    db = database
    principal = await db.tenant()
    await db.seed(principal, embedder, 0, 150)
    async with reembedding(db, embedder, page_size=10) as handle:
        async with running_worker(db.client, db.settings, db.pool, embedder, None):
            before = await progress_at_least(db, pages=4)
        # The worker is gone mid-run (its page in flight finished first): status still shows
        # where the run stands (from the memo), and a new worker takes it from there.
        stopped = await current_progress(db)
        assert stopped.phase is Phase.EMBEDDING and 0 < stopped.embedded < 150
        async with running_worker(db.client, db.settings, db.pool, embedder, None):
            with anyio.fail_after(240):
                final = await handle.result()

    assert before.pages <= stopped.pages
    assert final.phase is Phase.DONE and final.embedded == 150
    # Resumed, not restarted: the pages of the first pass were asked for in increasing id
    # order, each once (a run from zero would have asked for the first page again).
    cursors = await first_pass_cursors(handle)
    assert cursors[0] is None and len(cursors) == len(set(cursors))
    assert cursors[1:] == sorted(c for c in cursors[1:] if c is not None)
    assert len(cursors) == 16  # 150 memories, 10 a page, and the empty page that ends it
    assert await db.embedding_column() == ["embedding vector(128)"]
    # The run, worker restart included, replays on today's code (determinism).
    replayer = Replayer(workflows=[ReembedMemories], data_converter=db.client.data_converter,
                        workflow_runner=UnsandboxedWorkflowRunner())
    replayed = await replayer.replay_workflow(await handle.fetch_history())
    assert replayed.replay_failure is None

    # A process still on the old model (its vector made before it saw the switch) is refused
    # before it stores or compares that vector, and moves to the new model.
    stale = ActiveModel(embedder, db.settings)
    used = stale.current
    async with tenant_tx(db.pool, principal.tenant_id) as conn:
        with pytest.raises(ModelChanged, match="128 dimensions"):
            await stale.confirm(conn, used)
    assert stale.current.dim == 128 and np.allclose(
        stale.embed(["a text"]), new_embedder.embed(["a text"]), atol=1e-6)


async def current_progress(db: OwnDatabase) -> ReembedProgress:
    status = await reembed_status(db.client, db.settings)
    assert status is not None and status.progress is not None
    return status.progress


async def progress_at_least(db: OwnDatabase, *, pages: int) -> ReembedProgress:
    with anyio.fail_after(120):
        while True:
            status = await reembed_status(db.client, db.settings)
            progress = None if status is None else status.progress  # None: not shown yet
            if progress is not None and progress.pages >= pages:
                return progress
            await asyncio.sleep(0.05)


async def first_pass_cursors(handle: WorkflowHandle[object, ReembedProgress]) -> list[str | None]:
    """The cursor of every reembed_page step scheduled in the first pass, in order."""
    import json

    cursors: list[str | None] = []
    async for event in handle.fetch_history_events():
        scheduled = event.activity_task_scheduled_event_attributes
        if scheduled.activity_type.name == "start_reembed_pass" and cursors:
            break
        if scheduled.activity_type.name == "reembed_page":
            request = json.loads(scheduled.input.payloads[0].data)
            cursors.append(request["cursor"])
    return cursors


async def test_a_cancelled_reembed_leaves_the_old_model_in_place(
        database: OwnDatabase, embedder: Embedder) -> None:
    db = database
    principal = await db.tenant()
    texts = await db.seed(principal, embedder, 0, 60)
    async with running_worker(db.client, db.settings, db.pool, embedder, None), \
            reembedding(db, embedder, page_size=5) as handle:
        await progress_at_least(db, pages=2)
        await handle.cancel()
        with anyio.fail_after(60), pytest.raises(WorkflowFailureError):
            await handle.result()
    assert await db.embedding_column() == ["embedding vector(384)"]
    async with db.pool.acquire() as conn:
        records = await embeddings.model_records(conn)
    assert [(r.generation, r.dim, r.state) for r in records] == [
        (0, 384, "active"), (1, 128, "abandoned")]
    stored = await db.vectors()
    assert all(vector is not None and vector.shape == (384,) for _, vector in stored.values())
    assert {memory_id for memory_id in stored} == set(texts)
