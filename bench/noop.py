"""The orchestration floor: a workflow of three local activities that do nothing.

Bench-only. It runs on the stack's own Temporal server, in a worker process of its own (as the
product's worker is), with the product worker's options (unsandboxed runner, concurrency
limits) on a task queue of its own, and is started like IngestMemory (one start per item,
duplicate ids rejected). It leaves out everything IngestMemory adds: search attributes, memo,
the pydantic converter, tracing and metrics interceptors, the activities' work. What IngestMemory
costs above this is what our workflow adds, not what Temporal needs.

Worker: python -m bench.noop TEMPORAL_ADDRESS TASK_QUEUE (stops on SIGTERM).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

WORKFLOW = "BenchNoop"


@activity.defn(name="bench_noop_step")
async def noop_step(text: str) -> None:
    """Nothing: the step's cost is all orchestration."""


@workflow.defn(name=WORKFLOW)
class BenchNoop:
    @workflow.run
    async def run(self, text: str) -> None:
        for _ in range(3):  # IngestMemory: embed, decide, commit
            await workflow.execute_local_activity(
                noop_step, text, start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(days=1))


def noop_worker(client: Client, task_queue: str) -> Worker:
    # The product worker's options (workflows/worker.py build_worker).
    return Worker(client, task_queue=task_queue, workflows=[BenchNoop], activities=[noop_step],
                  workflow_runner=UnsandboxedWorkflowRunner(), max_concurrent_workflow_tasks=64,
                  max_concurrent_local_activities=128, max_concurrent_activities=32,
                  graceful_shutdown_timeout=timedelta(seconds=20))


async def serve(address: str, task_queue: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await Client.connect(address)
    async with noop_worker(client, task_queue):
        print("bench noop worker polling", flush=True)
        await stop.wait()


async def start_one(client: Client, task_queue: str, text: str) -> float:
    """Start one no-op workflow as the MCP server starts an ingestion; seconds the start took."""
    started = time.perf_counter()
    await client.start_workflow(WORKFLOW, text, id=f"bench-noop-{uuid.uuid4()}",
                                task_queue=task_queue,
                                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    return time.perf_counter() - started


async def completed(client: Client, task_queue: str) -> int:
    counted = await client.count_workflows(
        f"WorkflowType='{WORKFLOW}' AND TaskQueue='{task_queue}' AND ExecutionStatus='Completed'")
    return counted.count


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
