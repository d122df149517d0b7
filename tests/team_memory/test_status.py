"""`team-memory status` as a real command against the test PostgreSQL and Temporal."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from team_memory_core.models.memories import IngestInput
from team_memory_core.temporal import describe_workers
from tests.conftest import Stack
from tests.processes import ROOT, child_env

pytestmark = pytest.mark.anyio


@workflow.defn(name="IngestMemory")
class BrokenIngest:
    """Stands in for an ingestion hitting a bug: the workflow fails, the row stays pending."""

    @workflow.run
    async def run(self, item: IngestInput) -> None:
        raise ApplicationError(f"broken on purpose for {item.memory_id}", non_retryable=True)


async def until_heartbeating(stack: Stack) -> None:
    """A worker's first heartbeat comes one interval after it starts; status tells a
    heartbeating worker from a merely polling one, so wait for it (bounded)."""
    async with asyncio.timeout(15):
        while not (await describe_workers(stack.client, stack.settings.task_queue)).live_workers:
            await asyncio.sleep(0.2)


async def until_listed(stack: Stack, schedule_id: str) -> None:
    """Schedules are listed from Temporal's visibility store, which lags a creation by a moment
    (seconds on a loaded machine); status lists what Temporal lists, so wait for it (bounded)."""
    async with asyncio.timeout(30):
        while schedule_id not in [s.id async for s in await stack.client.list_schedules()]:
            await asyncio.sleep(0.2)


def run_status(stack: Stack, **env: str) -> subprocess.CompletedProcess[str]:
    settings = stack.settings
    assert settings.database_admin_url is not None
    return subprocess.run(
        [sys.executable, "-m", "team_memory", "status"], cwd=ROOT, capture_output=True,
        text=True, timeout=120,
        env=child_env(settings, DATABASE_ADMIN_URL=settings.database_admin_url,
                      TEAM_MEMORY_MCP_PORT="9", **env),
    )


async def test_status_reports_components_backlog_failures_and_schedules(stack: Stack) -> None:
    saved = await stack.service.save(stack.principal, "Status shows what is stuck in ingestion")
    # No relay yet: the save is acknowledged, its workflow waits in the outbox.
    waiting = await asyncio.to_thread(run_status, stack)
    schedule_id = f"test-status-{uuid.uuid4().hex[:8]}"
    schedule = await stack.client.create_schedule(schedule_id, Schedule(
        action=ScheduleActionStartWorkflow("ConsolidateMemories", id=f"{schedule_id}-run",
                                           task_queue=stack.settings.task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=24))]),
    ))
    try:
        async with Worker(stack.client, task_queue=stack.settings.task_queue,
                          workflows=[BrokenIngest],
                          workflow_runner=UnsandboxedWorkflowRunner()), stack.relay():
            handle = await stack.started(saved.workflow_id)
            with pytest.raises(Exception, match="failed"):
                await handle.result()
            await until_heartbeating(stack)
            result = await asyncio.to_thread(run_status, stack)
        stopped = await asyncio.to_thread(run_status, stack,
                                          TEMPORAL_ADDRESS="127.0.0.1:9")
    finally:
        await schedule.delete()
    assert "workflows to start   1 (the oldest saved " in waiting.stdout, waiting.stderr
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "workflows to start   0" in out
    assert "database     ok" in out
    assert "temporal     ok" in out
    assert "worker       ok: 1 worker(s) heartbeating" in out
    assert "mcp server   not reachable" in out
    pending = next(line for line in out.splitlines() if "pending memories" in line)
    assert f"{stack.principal.tenant_name}: 1" in pending  # other tests' tenants share the DB
    assert "failed workflows     1" in out
    assert schedule_id in out and "ConsolidateMemories" in out and "next run 20" in out
    assert "dedupe policy        local" in out
    assert "all-MiniLM-L6-v2-dynamic-int8 (local, 384 dims)" in out

    assert stopped.returncode == 1, stopped.stdout
    assert "temporal     error" in stopped.stdout
    assert "database     ok" in stopped.stdout
