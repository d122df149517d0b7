"""Activities of the re-embed: start building the new model's column, pages of vectors, the
switch, and clearing the old vectors. Each is idempotent (a retried step redoes nothing done).

Memory text is read and embedded here and never leaves: the workflow sees ids and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from team_memory_core.active_model import ActiveModel
from team_memory_core.contract import (
    ABANDON_REEMBED_ACTIVITY,
    BEGIN_REEMBED_ACTIVITY,
    FINISH_REEMBED_ACTIVITY,
    RECLAIM_PAGE_ACTIVITY,
    REEMBED_PAGE_ACTIVITY,
    REEMBED_PASS_ACTIVITY,
    SWITCH_EMBEDDING_ACTIVITY,
)
from team_memory_core.embedder import (
    BATCH_TUNING,
    Embedder,
    EmbeddingModel,
    UnknownModel,
    create_embedder_for,
    embed_async,
)
from team_memory_core.models.reembed import (
    BeginRequest,
    PageRequest,
    PageResult,
    PassRequest,
    PassStart,
    ReclaimRequest,
    ReembedState,
    SwitchRequest,
    SwitchResult,
)
from team_memory_core.settings import Settings
from team_memory_core.store import embeddings
from team_memory_core.store.embeddings import Unembedded
from team_memory_core.store.pool import tenant_tx

HEARTBEAT_EVERY_S = 5.0


@dataclass
class ReembedActivities:
    pool: asyncpg.Pool
    settings: Settings
    # The worker's ingestion model: moved to the new model as soon as this worker switches.
    active: ActiveModel
    _models: dict[EmbeddingModel, Embedder] = field(default_factory=dict)

    async def _embedder(self, model: EmbeddingModel) -> Embedder:
        if model not in self._models:
            try:
                self._models[model] = await asyncio.to_thread(
                    create_embedder_for, model, self.settings, BATCH_TUNING)
            except UnknownModel as error:
                raise ApplicationError(str(error), type="UnknownModel",
                                       non_retryable=True) from error
        return self._models[model]

    @activity.defn(name=BEGIN_REEMBED_ACTIVITY)
    async def begin_reembed(self, request: BeginRequest) -> ReembedState:
        """Load the model (a model that cannot load fails here, before any DDL), then add its
        column, index and trigger."""
        await self._embedder(request.model.model)
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                generation = await embeddings.begin(conn, request.model.model,
                                                    request.workflow_id)
            except (asyncpg.ObjectInUseError, asyncpg.InvalidParameterValueError) as error:
                raise ApplicationError(str(error), type="ReembedRefused",
                                       non_retryable=True) from error
        return ReembedState(generation=generation)

    @activity.defn(name=REEMBED_PASS_ACTIVITY)
    async def start_reembed_pass(self, request: PassRequest) -> PassStart:
        """Every tenant, and (``count``, before the switch) how many of their memories have
        the new vector already."""
        async with self.pool.acquire() as conn:
            tenants = await embeddings.tenants(conn)
        embedded = total = 0
        for tenant in tenants if request.count else []:
            async with tenant_tx(self.pool, tenant) as conn:
                counted = await embeddings.progress(conn)
            embedded, total = embedded + counted.embedded, total + counted.total
        return PassStart(tenants=tenants, embedded=embedded, total=total)

    @activity.defn(name=REEMBED_PAGE_ACTIVITY)
    async def reembed_page(self, request: PageRequest) -> PageResult:
        """The next page of the tenant's memories without a new vector: read, embed (no
        transaction open meanwhile), store where the text is unchanged."""
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            page = await embeddings.unembedded(conn, request.cursor, request.page_size)
        if not page:
            return PageResult(written=0, next_cursor=None)
        async with _heartbeating():
            vectors = await embed_async(await self._embedder(request.model.model),
                                        [memory.content for memory in page])
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            written = await embeddings.store_next(conn, page, vectors)
        more = len(page) == request.page_size
        return PageResult(written=written, next_cursor=page[-1].id if more else None)

    @activity.defn(name=SWITCH_EMBEDDING_ACTIVITY)
    async def switch_embedding_model(self, request: SwitchRequest) -> SwitchResult:
        """Under the ACCESS EXCLUSIVE lock on memories: the vectors still missing (memories
        saved since their tenant's last page), then the switch, in one transaction. More
        missing than ``max_missing``: nothing is done (another pass writes them without
        holding the lock) and the lock is released at once."""
        async with self.pool.acquire() as conn:
            if await _is_active(conn, request.generation):
                return SwitchResult(switched=True, missing=0)
        model = await self._embedder(request.model.model)
        async with _heartbeating(), self.pool.acquire() as conn, conn.transaction():
            await embeddings.lock_for_switch(conn)
            missing = await _missing(conn, request.max_missing + 1)
            count = sum(len(page) for page in missing.values())
            if count > request.max_missing:
                return SwitchResult(switched=False, missing=count)
            for tenant, page in missing.items():
                await embeddings.set_tenant(conn, tenant)
                await embeddings.store_next(conn, page, await embed_async(
                    model, [memory.content for memory in page]))
            await embeddings.switch(conn, request.generation)
        await self.active.follow(request.model.model)
        return SwitchResult(switched=True, missing=count)

    @activity.defn(name=RECLAIM_PAGE_ACTIVITY)
    async def reclaim_retired_vectors(self, request: ReclaimRequest) -> UUID | None:
        """Clear the old model's vectors of one page of the tenant's memories; the cursor of
        the next page, None when the tenant is done."""
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            last = await embeddings.retired_page(conn, request.cursor, request.page_size)
        return last

    @activity.defn(name=FINISH_REEMBED_ACTIVITY)
    async def finish_reembed(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await embeddings.finish(conn)

    @activity.defn(name=ABANDON_REEMBED_ACTIVITY)
    async def abandon_reembed(self, generation: int) -> None:
        """A run cancelled before its switch: the new column, index and trigger go (nothing
        if it had switched: the new model stays)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await embeddings.abandon(conn, generation)


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while the block runs: a step of a worker that died is retried after the
    heartbeat timeout, however long a page takes (an API model can be slow)."""
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def _is_active(conn: asyncpg.Connection, generation: int) -> bool:
    return any(r.generation == generation and r.state == "active"
               for r in await embeddings.model_records(conn))


async def _missing(conn: asyncpg.Connection, at_most: int) -> dict[UUID, list[Unembedded]]:
    """Every tenant's memories still without a new vector, up to ``at_most`` in all."""
    found: dict[UUID, list[Unembedded]] = {}
    left = at_most
    for tenant in await embeddings.tenants(conn):
        await embeddings.set_tenant(conn, tenant)
        page = await embeddings.unembedded(conn, None, left)
        if page:
            found[tenant] = page
            left -= len(page)
        if left <= 0:
            break
    return found
