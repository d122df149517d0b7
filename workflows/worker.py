"""The Temporal worker: runs the workflows and owns every side effect (activities), and the
outbox relay that starts the ingestion workflow of every saved memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.capture import CaptureActivities
from activities.consolidate import ConsolidationActivities
from activities.ingest import IngestActivities
from activities.reembed import ReembedActivities
from team_memory_core import schedules, telemetry
from team_memory_core.active_model import load_database_model
from team_memory_core.contract import RUNNING_INGESTIONS
from team_memory_core.embedder import BatchingEmbedder, Embedder
from team_memory_core.heap import freeze_start_up_objects
from team_memory_core.llm.client import Distiller
from team_memory_core.outbox import OutboxRelay
from team_memory_core.settings import Settings
from team_memory_core.store.pool import create_app_pool
from team_memory_core.temporal import connect, keyring_of
from workflows.capture import SessionObservations
from workflows.consolidate import Consolidate
from workflows.ingest import IngestMemory
from workflows.reembed import ReembedMemories

log = logging.getLogger("team_memory.worker")

QUEUE_DEPTH_INTERVAL_S = 15.0


def build_worker(
    client: Client,
    settings: Settings,
    pool: asyncpg.Pool,
    embedder: Embedder,
    distiller: Distiller | None,
) -> Worker:
    batching = BatchingEmbedder(embedder, window_ms=settings.embed_batch_window_ms,
                                max_batch=settings.embed_batch_max)
    ingest = IngestActivities(pool=pool, embedder=batching, settings=settings,
                              distiller=distiller)
    consolidate = ConsolidationActivities(pool=pool, embedder=batching, settings=settings,
                                          client=client, distiller=distiller)
    capture = CaptureActivities(pool=pool, settings=settings, keys=keyring_of(client),
                                distiller=distiller)
    reembed = ReembedActivities(pool=pool, settings=settings, active=ingest.model)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[IngestMemory, Consolidate, SessionObservations, ReembedMemories],
        activities=[
            ingest.ingest_memory, ingest.embed_memory, ingest.decide_memory,
            ingest.commit_memory,
            consolidate.ensure_project_schedule, consolidate.start_consolidation,
            consolidate.find_clusters, consolidate.review_cluster, consolidate.archive_stale,
            consolidate.review_changed_memories, consolidate.refresh_manifesto,
            consolidate.finish_consolidation,
            capture.distill_session_events,
            reembed.begin_reembed, reembed.start_reembed_pass, reembed.reembed_page,
            reembed.switch_embedding_model, reembed.reclaim_retired_vectors,
            reembed.finish_reembed, reembed.abandon_reembed,
        ],
        # The workflows are short deterministic code calling activities; re-importing them in
        # the sandbox for every run cost about a third of the throughput (platform notes).
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_workflow_tasks=64,
        max_concurrent_local_activities=128,
        max_concurrent_activities=32,
        graceful_shutdown_timeout=timedelta(seconds=20),
        interceptors=[telemetry.ActivityMetricsInterceptor()],
    )


@contextlib.asynccontextmanager
async def running_worker(
    client: Client,
    settings: Settings,
    pool: asyncpg.Pool,
    embedder: Embedder,
    distiller: Distiller | None,
) -> AsyncIterator[Worker]:
    """The worker polling its task queue, and the outbox relay starting the workflows of the
    memories saved for that queue (team_memory_core/outbox.py)."""
    relay = OutboxRelay(pool=pool, client=client, task_queue=settings.task_queue,
                        dsn=settings.database_url)
    async with build_worker(client, settings, pool, embedder, distiller) as worker, \
            relay.running():
        yield worker


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Poll until SIGINT/SIGTERM (or ``stop``), then let in-flight tasks finish."""
    stop = stop or _stop_on_signals()
    pool = await create_app_pool(settings)
    distiller = Distiller.from_settings(settings)
    try:
        embedder = await load_database_model(pool, settings, None)
        client = await connect(settings, pool)
        ensured = await schedules.ensure_all(client, settings, pool)
        log.info("consolidation schedules ensured for %d project(s), daily at %s %s",
                 len(ensured), settings.consolidation_time, settings.consolidation_timezone)
        log.info("worker polling task queue %s on %s (embedder %s, dedupe policy %s)",
                 settings.task_queue, settings.temporal_target, embedder.name,
                 settings.dedupe_policy)
        async with running_worker(client, settings, pool, embedder, distiller), \
                _measuring_queue_depth(client):
            freeze_start_up_objects()
            await stop.wait()
            log.info("worker stopping: finishing in-flight tasks")
    finally:
        if distiller is not None:
            await distiller.aclose()
        await pool.close()


@contextlib.asynccontextmanager
async def _measuring_queue_depth(client: Client) -> AsyncIterator[None]:
    """Refresh the pending-ingestions gauge while the worker runs (when metrics are exported)."""
    if not telemetry.metrics_enabled():
        yield
        return
    task = asyncio.create_task(_refresh_queue_depth(client))
    try:
        yield
    finally:
        task.cancel()


async def _refresh_queue_depth(client: Client) -> None:
    while True:
        try:
            counted = await client.count_workflows(RUNNING_INGESTIONS)
            telemetry.pending_ingestions.value = counted.count
        except RPCError as error:
            log.warning("could not count pending ingestions: %s", error)
        await asyncio.sleep(QUEUE_DEPTH_INTERVAL_S)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop

