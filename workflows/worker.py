"""The Temporal worker: runs the workflows and owns every side effect (activities)."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

import asyncpg
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.ingest import IngestActivities
from team_memory import llm
from team_memory.db import create_app_pool
from team_memory.embedder import BatchingEmbedder, Embedder, create_embedder
from team_memory.migrate import check_embedding_dim
from team_memory.settings import Settings
from team_memory.temporal import connect
from workflows.ingest import IngestMemory

log = logging.getLogger("team_memory.worker")


def build_worker(
    client: Client,
    settings: Settings,
    pool: asyncpg.Pool,
    embedder: Embedder,
    distiller: llm.Distiller | None,
) -> Worker:
    ingest = IngestActivities(
        pool=pool,
        embedder=BatchingEmbedder(embedder, window_ms=settings.embed_batch_window_ms,
                                  max_batch=settings.embed_batch_max),
        settings=settings,
        distiller=distiller,
    )
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[IngestMemory],
        activities=[ingest.embed_memory, ingest.decide_memory, ingest.commit_memory],
        # IngestMemory is a few lines of deterministic code calling activities; re-importing it
        # in the sandbox for every run cost about a third of the throughput (platform notes).
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_workflow_tasks=64,
        max_concurrent_local_activities=128,
        max_concurrent_activities=32,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Poll until SIGINT/SIGTERM (or ``stop``), then let in-flight tasks finish."""
    stop = stop or _stop_on_signals()
    embedder = create_embedder(settings)
    pool = await create_app_pool(settings)
    distiller = llm.Distiller.from_settings(settings)
    try:
        async with pool.acquire() as conn:
            await check_embedding_dim(conn, embedder.dim)
        client = await connect(settings)
        log.info("worker polling task queue %s on %s (embedder %s, dedupe policy %s)",
                 settings.task_queue, settings.temporal_target, embedder.name,
                 settings.dedupe_policy)
        async with build_worker(client, settings, pool, embedder, distiller):
            await stop.wait()
            log.info("worker stopping: finishing in-flight tasks")
    finally:
        if distiller is not None:
            await distiller.aclose()
        await pool.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop

