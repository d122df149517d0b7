"""The outbox relay: starts the IngestMemory workflow of every acknowledged memory.

A save commits its pending memory and an outbox row in one transaction and answers at once
(mcp_server/memories.py); it never waits on Temporal. The relay runs in each worker process
(workflows/worker.py). It wakes when a save commits (LISTEN/NOTIFY) and sweeps every few
seconds anyway, so a notification missed while its connection was down strands nothing. For
each tenant with rows due, in that tenant's transaction, it claims a batch (rows another relay
holds are skipped), prepares each workflow's payload key, starts the workflows with the ids,
search attributes and memo a save used to start them with, and deletes the rows of those that
started; a failed start is retried with backoff. While Temporal is down the rows wait; nothing
acknowledged is lost, and a workflow already started (a start whose answer was lost, or a row
claimed again after a crash) counts as started: its id is derived from the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from team_memory_core import telemetry
from team_memory_core.contract import INGEST_WORKFLOW, ingest_attributes
from team_memory_core.models.memories import IngestInput
from team_memory_core.rules.redaction import preview
from team_memory_core.store import outbox
from team_memory_core.store.pool import tenant_tx
from team_memory_core.temporal import keyring_of

log = logging.getLogger("team_memory.outbox")

BATCH = 64  # rows claimed per tenant transaction
START_CONCURRENCY = 16  # workflow starts in flight at once
# Bounds how long a claimed batch (and so a purge of one of its memories) can wait on Temporal.
START_TIMEOUT_S = 10.0
SWEEP_S = 5.0
# A round of claims starts at least this long after the last one ended: during a burst of
# saves a round takes the rows of several (fewer claim and key transactions per memory); the
# first save after a quiet spell is claimed at once.
GATHER_S = 0.05
LISTEN_TIMEOUT_S = 5.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0

STARTED = "started"
ALREADY_STARTED = "already started"


def retry_delay(attempts: int) -> float:
    """Seconds before another try of a row that failed ``attempts`` times before this one."""
    return float(min(RETRY_FIRST_S * 2 ** min(attempts, 16), RETRY_MAX_S))


@dataclass
class OutboxRelay:
    pool: asyncpg.Pool
    client: Client
    task_queue: str
    dsn: str | None = None  # where to LISTEN (None: sweeps only)
    sweep_s: float = SWEEP_S
    gather_s: float = GATHER_S
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _listener: asyncpg.Connection | None = None
    _starts: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(START_CONCURRENCY))
    # Batches failed in a row. After one (Temporal down, most likely), one row at a time
    # until one starts, backing off: an outage costs a probe per retry, not a key and a start
    # attempt for every row.
    _failed_batches: int = 0
    # What became of each start this relay tried, and how many times it looked (logged;
    # read by tests).
    outcomes: Counter[str] = field(default_factory=Counter)
    sweeps: int = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OutboxRelay]:
        """Relay in the background until the block ends."""
        task = asyncio.create_task(self.run(), name="outbox relay")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_round = -self.gather_s
        try:
            while True:
                await self._listen()
                await asyncio.sleep(max(last_round + self.gather_s - loop.time(), 0))
                self._wake.clear()
                try:
                    wait = await self.relay_due()
                except Exception as error:
                    # The relay outlives any one failure (PostgreSQL down, a bug in one
                    # row): a relay that stopped would strand every later save.
                    log.warning("outbox relay: %s: %s; retrying in %.0f s",
                                type(error).__name__, error, RETRY_MAX_S)
                    wait = RETRY_MAX_S
                last_round = loop.time()
                if self._failed_batches:
                    await asyncio.sleep(wait)  # backing off: new saves do not cut it short
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
        finally:
            await self._unlisten()

    async def relay_due(self) -> float:
        """Start the workflows of the rows due now; returns the seconds until the next sweep
        (sooner when a row is due before it)."""
        async with self.pool.acquire() as conn:
            waiting = await outbox.waiting_tenants(conn, self.task_queue)
        self.sweeps += 1
        wait = self.sweep_s
        for tenant in waiting:
            if tenant.due_in > 0:
                wait = min(wait, tenant.due_in)
                continue
            while (batch := await self._relay_batch(tenant.tenant_id, tenant.tenant_name)) \
                    is not None and batch.full and not batch.failed:
                pass
            if batch is not None and batch.failed:
                # Temporal is likely down for every tenant: back off instead of trying them all.
                return min(wait, batch.retry_in)
        return wait

    async def _relay_batch(self, tenant_id: UUID, tenant_name: str) -> _Batch | None:
        async with tenant_tx(self.pool, tenant_id) as conn:
            limit = 1 if self._failed_batches else BATCH
            claimed = await outbox.claim(conn, self.task_queue, limit)
            if not claimed:
                return None
            outcomes = await self._start_all(tenant_id, tenant_name, claimed)
            self.outcomes.update(o if isinstance(o, str) else "failed" for o in outcomes)
            started = [row for row, outcome in zip(claimed, outcomes, strict=True)
                       if isinstance(outcome, str)]
            failed = [(row, outcome) for row, outcome in zip(claimed, outcomes, strict=True)
                      if isinstance(outcome, BaseException)]
            await outbox.remove(conn, [row.item.memory_id for row in started])
            for row, error in failed:
                await outbox.postpone(conn, row.item.memory_id, retry_delay(row.attempts),
                                      _describe(error))
        log.debug("outbox relay: %s", dict(self.outcomes))
        if failed:
            self._failed_batches += 1
            log.warning("outbox relay: %d of %d workflow start(s) failed (%s); retrying with "
                        "backoff", len(failed), len(claimed), _describe(failed[0][1]))
        elif self._failed_batches:
            self._failed_batches = 0
            log.info("outbox relay: workflows start again")
        return _Batch(full=len(claimed) == limit, failed=bool(failed),
                      retry_in=retry_delay(max(self._failed_batches - 1, 0)))

    async def _start_all(self, tenant_id: UUID, tenant_name: str,
                         claimed: list[outbox.Claimed]) -> list[str | BaseException]:
        """Each row's outcome: STARTED, ALREADY_STARTED or why it failed."""
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                # Committed before Temporal sees the workflows (a worker must find a key to
                # decode), all in one transaction.
                await keyring_of(self.client).prepare_many(
                    tenant_id, [row.item.workflow_id(tenant_name) for row in claimed])
        except Exception as error:  # every row fails with it (retried with backoff)
            return [error] * len(claimed)
        return await asyncio.gather(*(self._start(tenant_name, row) for row in claimed),
                                    return_exceptions=True)

    async def _start(self, tenant_name: str, row: outbox.Claimed) -> str:
        """STARTED, or ALREADY_STARTED when Temporal holds the workflow already."""
        item = row.item
        workflow_id = item.workflow_id(tenant_name)
        # In the save's trace: its StartWorkflow span is a child of the save's.
        with telemetry.continued(row.trace_context):
            return await self._start_in_trace(tenant_name, item, workflow_id)

    async def _start_in_trace(self, tenant_name: str, item: IngestInput,
                              workflow_id: str) -> str:
        async with self._starts, asyncio.timeout(START_TIMEOUT_S):
            try:
                await self.client.start_workflow(
                    INGEST_WORKFLOW, item, id=workflow_id, task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    search_attributes=ingest_attributes(tenant_name, item.project,
                                                        item.category.value),
                    memo={"preview": preview(item.content), "memory_id": str(item.memory_id)},
                    # The relay runs in a worker of this queue with the same client: the server
                    # may hand the first workflow task back in the start's answer (no poll).
                    request_eager_start=True,
                )
            except WorkflowAlreadyStartedError:
                return ALREADY_STARTED  # a start whose answer was lost, or a row claimed again
        return STARTED

    async def _listen(self) -> None:
        if self.dsn is None or (self._listener is not None and not self._listener.is_closed()):
            return
        try:
            self._listener = await outbox.listen(self.dsn, self._notified, LISTEN_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            self._listener = None
            log.warning("outbox relay: cannot listen for saves (%s); sweeping every %.0f s",
                        error, self.sweep_s)

    def _notified(self, task_queue: str) -> None:
        if task_queue == self.task_queue:
            self._wake.set()

    async def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self._listener.close(timeout=LISTEN_TIMEOUT_S)
            self._listener = None


@dataclass(frozen=True)
class _Batch:
    full: bool  # more rows may be due
    failed: bool
    retry_in: float


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer from Temporal within {START_TIMEOUT_S:.0f} s"
    return f"{type(error).__name__}: {error}"[:500]
