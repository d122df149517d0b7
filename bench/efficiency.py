"""CPU per committed memory by component, against the orchestration floor, in one run.

An ingestion burst (N MCP clients saving back to back) is measured from the first save until
every memory is committed and no IngestMemory workflow runs; the CPU each component spent in
that window, read from /proc, is divided by the memories committed. The floor is the same burst
of no-op workflows (bench/noop.py) started on the same Temporal server.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from mcp import Client as McpClient
from temporalio.client import Client as TemporalClient

from bench import noop
from bench.corpus import memory_text
from bench.cpu import (
    Component,
    Snapshot,
    machine_busy_seconds,
    snapshot,
    spent,
    this_process,
    thread_cpu_seconds,
)
from bench.stack import BenchStack
from bench.worker_profile import (
    ThreadCpu,
    cpu_by_thread_group,
    python_thread_names,
    thread_spent,
)

if TYPE_CHECKING:
    from bench.run import Bench

LABELS = {"worker": "worker", "temporal": "Temporal dev server", "postgres": "PostgreSQL",
          "mcp": "MCP server", "client": "client (the benchmark process)"}
POLL_S = 0.25  # coarse on purpose: polling costs PostgreSQL / Temporal CPU inside the window
NOOP_QUEUE = "bench-noop"


@dataclass
class Burst:
    """One measured burst: items done, seconds from the first start to the last one done,
    CPU seconds per component, and each call's latency as its caller saw it."""

    items: int
    seconds: float
    cpu: Snapshot
    latencies: list[float]
    window: float  # seconds over which CPU was measured (until the last workflow closed)
    machine_busy: float  # CPU seconds the whole machine was busy in the window, anyone's
    worker_pid: int = 0
    worker_thread_cpu: ThreadCpu = field(default_factory=dict)
    thread_names: dict[int, str] = field(default_factory=dict)  # Python names of its threads

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    def ms_per_item(self, component: str) -> float:
        return self.cpu[component] * 1000 / self.items

    @property
    def whole_ms(self) -> float:
        return sum(self.cpu.values()) * 1000 / self.items

    @property
    def worker_threads(self) -> dict[str, float]:
        """The worker's CPU seconds by thread group."""
        return cpu_by_thread_group(self.worker_pid, self.worker_thread_cpu, self.cpu["worker"],
                                   self.thread_names)

    def cores(self, cpu_seconds: float) -> float:
        """Average cores busy over the window for ``cpu_seconds`` of CPU."""
        return cpu_seconds / self.window


def stack_components(stack: BenchStack) -> list[Component]:
    return [Component("worker", stack.children["worker"].pid),
            Component("temporal", stack.children["temporal"].pid),
            Component("postgres", stack.postmaster_pid()),
            Component("mcp", stack.children["mcp"].pid),
            this_process("client")]


async def running_ingestions(temporal: TemporalClient) -> int:
    counted = await temporal.count_workflows(
        "WorkflowType='IngestMemory' AND ExecutionStatus='Running'")
    return counted.count


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        await asyncio.sleep(POLL_S)


async def ingest_burst(bench: Bench, temporal: TemporalClient, clients: int, per_client: int,
                       name_threads: bool = True) -> Burst:
    """``clients`` MCP sessions saving ``per_client`` memories each, back to back. Naming the
    worker's threads attaches py-spy for a moment after the window (not while it records)."""
    await bench.drain()
    await until(lambda: _none_running(temporal), "earlier ingestions did not finish")
    components = stack_components(bench.stack)
    worker = bench.stack.children["worker"].pid
    ids: list[UUID] = []

    async def save(client: McpClient) -> None:
        ids.append(await bench.save(client))

    threads_before, before = thread_cpu_seconds(worker), snapshot(components)
    busy, started = machine_busy_seconds(), time.monotonic()
    latencies = await bench.closed_loop(bench.stack.mcp_url, clients, clients * per_client, save)
    await until(lambda: _all_committed(bench), "the burst was not committed")
    committed = time.monotonic()
    await until(lambda: _none_running(temporal), "the burst's workflows did not finish")
    after, threads_after = snapshot(components), thread_cpu_seconds(worker)
    busy, window = machine_busy_seconds() - busy, time.monotonic() - started
    return Burst(len(ids), committed - started, spent(before, after), latencies, window, busy,
                 worker, thread_spent(threads_before, threads_after),
                 python_thread_names(worker) if name_threads else {})


async def _none_running(temporal: TemporalClient) -> bool:
    return await running_ingestions(temporal) == 0


async def _all_committed(bench: Bench) -> bool:
    pending = await bench.db.fetchval("SELECT count(*) FROM memories WHERE status = 'pending'")
    return bool(pending == 0)


@dataclass
class NoopFloor:
    """The no-op worker process and the client that starts its workflows."""

    temporal: TemporalClient
    process: subprocess.Popen[bytes]
    stack: BenchStack
    _texts: itertools.count[int] = field(default_factory=lambda: itertools.count(20_000_000))

    def components(self) -> list[Component]:
        return [Component("worker", self.process.pid),
                Component("temporal", self.stack.children["temporal"].pid),
                this_process("client")]

    async def run(self, concurrency: int, per_client: int) -> Burst:
        """``concurrency`` starters, each starting ``per_client`` workflows back to back."""
        total = concurrency * per_client
        done_before = await noop.completed(self.temporal, NOOP_QUEUE)
        latencies: list[float] = []
        components = self.components()
        before, busy, started = snapshot(components), machine_busy_seconds(), time.monotonic()
        await asyncio.gather(*(self._starter(per_client, latencies) for _ in range(concurrency)))
        await until(lambda: self._completed(done_before + total), "no-op workflows unfinished")
        after, busy = snapshot(components), machine_busy_seconds() - busy
        seconds = time.monotonic() - started
        return Burst(total, seconds, spent(before, after), latencies, seconds, busy)

    async def _starter(self, count: int, latencies: list[float]) -> None:
        for _ in range(count):
            text = memory_text(next(self._texts))
            latencies.append(await noop.start_one(self.temporal, NOOP_QUEUE, text))

    async def _completed(self, expected: int) -> bool:
        if self.process.poll() is not None:
            log = (self.stack.root / "noop-worker.log").read_text(errors="replace")
            raise RuntimeError(f"the no-op worker exited ({self.process.returncode}):\n{log}")
        return await noop.completed(self.temporal, NOOP_QUEUE) >= expected


def start_noop_worker(stack: BenchStack) -> subprocess.Popen[bytes]:
    with (stack.root / "noop-worker.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "bench.noop", stack.temporal_address,
                                 NOOP_QUEUE], env=stack.child_env(), stdout=log,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent)
