"""The Temporal client every process connects with, and the search attributes operators use."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import asyncpg
from temporalio.api.enums.v1 import TaskQueueType, WorkerStatus
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ListWorkersRequest
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError

from team_memory_core import telemetry
from team_memory_core.payload_codec import EncryptionCodec, encrypting_data_converter
from team_memory_core.settings import Settings
from team_memory_core.temporal_keys import Keyring, load_kek

# Workers report to the server this often; a worker whose last heartbeat is older than
# WORKER_STALE_AFTER is taken for dead. (Task-queue pollers are no use for that: the server
# keeps listing a dead worker's pollers for about a minute, the long-poll interval.)
WORKER_HEARTBEAT = timedelta(seconds=2)
WORKER_STALE_AFTER = 3 * WORKER_HEARTBEAT


CORE_LOGGER = logging.getLogger("temporalio.core")


@cache
def _runtime() -> Runtime:
    """One SDK runtime per process (each owns a thread pool), with frequent worker heartbeats.
    The SDK core's own warnings go through Python logging (JSON logs, stderr), not stdout."""
    core_logs = LoggingConfig(filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                              forwarding=LogForwardingConfig(logger=CORE_LOGGER))
    return Runtime(telemetry=TelemetryConfig(logging=core_logs),
                   worker_heartbeat_interval=WORKER_HEARTBEAT)


async def connect(settings: Settings, pool: asyncpg.Pool | None) -> Client:
    """A client whose every payload and memo is encrypted (team_memory_core.payload_codec), with
    keys found through ``pool`` (the application role; None: a client that only reads
    metadata, such as `team-memory status`)."""
    keyring = Keyring(pool, load_kek(settings))
    client = await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        data_converter=encrypting_data_converter(keyring),
        # Spans only where traces are exported: without, the interceptor still ran on every
        # workflow activation and activity for spans nobody reads.
        interceptors=[TracingInterceptor()] if telemetry.tracing_enabled() else [],
        runtime=_runtime(),
    )
    keyring.client = client
    return client


def keyring_of(client: Client) -> Keyring:
    codec = client.data_converter.payload_codec
    if not isinstance(codec, EncryptionCodec):
        raise TypeError("this Temporal client was not made by team_memory_core.temporal.connect")
    return codec.keyring


@dataclass(frozen=True)
class WorkerReport:
    """Who serves the task queue: live workers (by heartbeat) and the pollers the server lists."""

    live_workers: list[str]
    heartbeating: int  # workers the server holds heartbeats of, live or not
    pollers: list[str]
    recent_pollers: list[str]  # pollers seen within WORKER_STALE_AFTER
    heartbeats_supported: bool

    @property
    def ok(self) -> bool:
        if not self.heartbeats_supported:
            return bool(self.pollers)
        # A worker heartbeats one interval after it starts; until then its fresh poll counts.
        return bool(self.live_workers) or (not self.heartbeating and bool(self.recent_pollers))

    def describe(self) -> str:
        if self.live_workers:
            return (f"ok: {len(self.live_workers)} worker(s) heartbeating: "
                    f"{', '.join(sorted(self.live_workers))}")
        if self.ok:
            return f"ok: {len(self.pollers)} poller(s): {', '.join(self.pollers)}"
        if self.pollers:
            return "error: no worker heartbeat (pollers of dead workers linger about a minute)"
        return "error: no worker polling"


async def describe_workers(client: Client, task_queue: str) -> WorkerReport:
    described = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    ))
    fresh_after = datetime.now(UTC) - WORKER_STALE_AFTER
    pollers = sorted({poller.identity for poller in described.pollers})
    recent = sorted({poller.identity for poller in described.pollers
                     if poller.last_access_time.ToDatetime(UTC) >= fresh_after})
    try:
        listed = await client.workflow_service.list_workers(ListWorkersRequest(
            namespace=client.namespace, query=f"TaskQueue='{task_queue}'"))
    except RPCError:
        # Servers without worker heartbeats (older, or frontend.ListWorkersEnabled off).
        return WorkerReport(live_workers=[], heartbeating=0, pollers=pollers,
                            recent_pollers=recent, heartbeats_supported=False)
    live = [
        info.worker_heartbeat.worker_identity for info in listed.workers_info
        if info.worker_heartbeat.status == WorkerStatus.WORKER_STATUS_RUNNING
        and info.worker_heartbeat.heartbeat_time.ToDatetime(UTC) >= fresh_after
    ]
    return WorkerReport(live_workers=live, heartbeating=len(listed.workers_info),
                        pollers=pollers, recent_pollers=recent, heartbeats_supported=True)
