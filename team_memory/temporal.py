"""The Temporal client every process connects with, and the search attributes operators use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from temporalio.api.enums.v1 import TaskQueueType, WorkerStatus
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ListWorkersRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError

from team_memory.settings import Settings

# Registered on the embedded dev server by `up` (and in docker-compose) so the Web UI and
# `temporal workflow list --query` can filter ingestions by tenant, project, category, decision.
TENANT_KEY = SearchAttributeKey.for_keyword("TenantName")
PROJECT_KEY = SearchAttributeKey.for_keyword("Project")
CATEGORY_KEY = SearchAttributeKey.for_keyword("Category")
DECISION_KEY = SearchAttributeKey.for_keyword("Decision")
SEARCH_ATTRIBUTES = (TENANT_KEY, PROJECT_KEY, CATEGORY_KEY, DECISION_KEY)

# Workers report to the server this often; a worker whose last heartbeat is older than
# WORKER_STALE_AFTER is taken for dead. (Task-queue pollers are no use for that: the server
# keeps listing a dead worker's pollers for about a minute, the long-poll interval.)
WORKER_HEARTBEAT = timedelta(seconds=2)
WORKER_STALE_AFTER = 3 * WORKER_HEARTBEAT


@cache
def _runtime() -> Runtime:
    """One SDK runtime per process (each owns a thread pool), with frequent worker heartbeats."""
    return Runtime(telemetry=TelemetryConfig(), worker_heartbeat_interval=WORKER_HEARTBEAT)


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
        runtime=_runtime(),
    )


@dataclass(frozen=True)
class WorkerReport:
    """Who serves the task queue: live workers (by heartbeat) and the pollers the server lists."""

    live_workers: list[str]
    pollers: list[str]
    heartbeats_supported: bool

    @property
    def ok(self) -> bool:
        return bool(self.live_workers) if self.heartbeats_supported else bool(self.pollers)

    def describe(self) -> str:
        if self.ok:
            source = "heartbeating" if self.heartbeats_supported else "polling (no heartbeats)"
            workers = self.live_workers if self.heartbeats_supported else self.pollers
            return f"ok: {len(workers)} worker(s) {source}: {', '.join(sorted(workers))}"
        if self.pollers:
            return "error: no worker heartbeat (pollers of dead workers linger about a minute)"
        return "error: no worker polling"


async def describe_workers(client: Client, task_queue: str) -> WorkerReport:
    described = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    ))
    pollers = sorted({poller.identity for poller in described.pollers})
    try:
        listed = await client.workflow_service.list_workers(ListWorkersRequest(
            namespace=client.namespace, query=f"TaskQueue='{task_queue}'"))
    except RPCError:
        # Servers without worker heartbeats (older, or frontend.ListWorkersEnabled off).
        return WorkerReport(live_workers=[], pollers=pollers, heartbeats_supported=False)
    fresh_after = datetime.now(UTC) - WORKER_STALE_AFTER
    live = [
        info.worker_heartbeat.worker_identity for info in listed.workers_info
        if info.worker_heartbeat.status == WorkerStatus.WORKER_STATUS_RUNNING
        and info.worker_heartbeat.heartbeat_time.ToDatetime(UTC) >= fresh_after
    ]
    return WorkerReport(live_workers=live, pollers=pollers, heartbeats_supported=True)
