"""The benchmark run: one stack, every measure, one table."""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from temporalio.client import Client as TemporalClient

from bench.bulk import BulkLoader
from bench.corpus import memory_text, question
from bench.cpu import (
    Component,
    MachineShare,
    reference_loop_seconds,
    snapshot,
    spent,
    this_process,
)
from bench.efficiency import Burst, NoopFloor, ingest_burst, start_noop_worker
from bench.efficiency_report import (
    ACK_ONE,
    burst_rows,
    cpu_table,
    profile_table,
    thread_table,
    versus_inline,
)
from bench.stack import BenchStack, bytecode_cached, start_stack, time_serve_startup
from bench.stats import Table
from bench.worker_profile import parse_raw, recording
from team_memory.embedded import free_port, stop_process, wait_for_port
from team_memory.stack import LOCAL_TENANT
from team_memory_core.embedder import LocalEmbedder
from team_memory_core.settings import Settings
from team_memory_core.store.pool import create_pool

Targets = dict[int, tuple[float | None, float | None]]  # clients -> (p50, p99) ms


@dataclass(frozen=True)
class Options:
    saves_per_level: int = 320
    latency_samples: int = 100
    throughput_memories: int = 2000
    search_sizes: tuple[int, ...] = (10_000, 100_000)
    searches: int = 800
    unique_vectors: int = 20_000
    burst_clients: int = 8
    burst_saves_per_client: int = 60
    output: Path | None = None
    profile_worker: Path | None = None
    burst_only: bool = False  # the CPU-per-memory burst and its floor, nothing else
    search_only: bool = False  # the bulk load and the searches, nothing else

    @classmethod
    def quick(cls) -> Options:
        return cls(saves_per_level=64, latency_samples=20, throughput_memories=200,
                   search_sizes=(2_000,), searches=160, unique_vectors=2_000,
                   burst_saves_per_client=20)


class ToolFailed(RuntimeError):
    pass


def client_for(url: str, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    return Client(streamable_http_client(url, http_client=http))


@asynccontextmanager
async def clients(url: str, key: str, count: int) -> AsyncIterator[list[Client]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(client_for(url, key)) for _ in range(count)]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        raise ToolFailed(f"{tool}: {result.content}")
    return dict(result.structured_content)


class Bench:
    def __init__(self, stack: BenchStack, options: Options, db: asyncpg.Pool) -> None:
        self.stack = stack
        self.options = options
        self.db = db
        self.table = Table()
        self._texts = itertools.count()
        self._questions = itertools.count()
        self._speed: list[str] = []

    def check_speed(self, when: str) -> None:
        """The machine's speed now (``reference_loop_seconds``), for the report's last row."""
        self._speed.append(f"{when} {reference_loop_seconds() * 1000:.0f} ms")

    def report_speed(self) -> None:
        self.check_speed("at the end")
        self.table.add("CPU speed check: a 5M-step Python loop, CPU time (the same machine "
                       "measured 320 ms at its fastest, 850 ms with its host busy)",
                       ", ".join(self._speed))

    def next_text(self) -> str:
        return memory_text(next(self._texts))

    async def closed_loop(self, url: str, concurrency: int, total: int,
                          one: Callable[[Client], Awaitable[Any]]) -> list[float]:
        """``total`` calls spread over ``concurrency`` clients, each calling back to back."""
        samples: list[float] = []
        remaining = itertools.count()

        async def client_loop(client: Client) -> None:
            while next(remaining) < total:
                started = time.perf_counter()
                await one(client)
                samples.append(time.perf_counter() - started)

        async with clients(url, self.stack.api_key, concurrency) as opened:
            await asyncio.gather(*(client_loop(c) for c in opened))
        return samples

    async def save(self, client: Client, tool: str = "save_memory") -> UUID:
        return UUID((await call(client, tool, content=self.next_text()))["id"])

    async def wait_committed(self, ids: list[UUID], timeout: float = 600) -> float:
        """Seconds (monotonic clock) at which the last of ``ids`` left `pending`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = await self.db.fetchval(
                "SELECT count(*) FROM memories WHERE id = ANY($1) AND status <> 'pending'", ids)
            if done == len(ids):
                return time.monotonic()
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{len(ids)} memories not all committed within {timeout} s")

    async def drain(self) -> None:
        deadline = time.monotonic() + 600
        while await self.db.fetchval("SELECT count(*) FROM memories WHERE status = 'pending'"):
            if time.monotonic() > deadline:
                raise TimeoutError("ingestion backlog did not drain")
            await asyncio.sleep(0.1)

    # --- phases -----------------------------------------------------------------------------

    async def save_ack(self, url: str, tool: str, label: str, levels: tuple[int, ...],
                       targets: Targets | None = None) -> dict[int, list[float]]:
        """Closed-loop saves at each concurrency (backlog drained between levels)."""
        measured: dict[int, list[float]] = {}
        for concurrency in levels:
            await self.drain()
            measured[concurrency] = await self.closed_loop(
                url, concurrency, self.options.saves_per_level, lambda c: self.save(c, tool))
            self.table.latency(f"{label}, {concurrency} client(s)", measured[concurrency],
                               *(targets or {}).get(concurrency, (None, None)))
        return measured

    async def save_to_searchable(self) -> None:
        await self.drain()
        searchable, committed = [], []
        async with client_for(self.stack.mcp_url, self.stack.api_key) as client:
            for _ in range(self.options.latency_samples):
                text = self.next_text()
                started = time.perf_counter()
                saved = (await call(client, "save_memory", content=text))["id"]
                while True:
                    hits = (await call(client, "search_memory", query=text, limit=5))["results"]
                    if any(hit["id"] == saved for hit in hits):
                        break
                searchable.append(time.perf_counter() - started)
                while await self.db.fetchval("SELECT status FROM memories WHERE id = $1",
                                             UUID(saved)) == "pending":
                    await asyncio.sleep(0.005)
                committed.append(time.perf_counter() - started)
        self.table.latency("save -> searchable (save, then search until found), 1 client",
                           searchable, 300)
        self.table.latency("save -> committed (workflow done: embedded, decided, active)",
                           committed)

    async def throughput(self) -> None:
        await self.drain()
        total = self.options.throughput_memories
        ids: list[UUID] = []
        started = time.monotonic()

        async def one(client: Client) -> None:
            ids.append(await self.save(client))

        await self.closed_loop(self.stack.mcp_url, 32, total, one)
        acked = time.monotonic()
        finished = await self.wait_committed(ids)
        rate = total / (finished - started)
        self.table.add(
            f"end-to-end ingestion, {total} memories saved by 32 clients",
            f"{rate:.1f} memories/s committed ({total / (acked - started):.0f}/s acknowledged; "
            f"last commit {finished - started:.1f} s after the first save)",
            ">= 100/s", rate >= 100)

    async def search(self, loader: BulkLoader, baseline_url: str) -> None:
        for size in self.options.search_sizes:
            added = await loader.fill(LOCAL_TENANT, size)
            print(f"  (bulk-loaded {added} rows; {size} memories in the tenant)", flush=True)
            async def product(client: Client) -> None:
                await call(client, "search_memory", query=question(next(self._questions)), limit=5)

            async def vector(client: Client) -> None:
                await call(client, "search_vector", query=question(next(self._questions)), limit=5)

            n = self.options.searches
            warm = await self.closed_loop(self.stack.mcp_url, 4, 32, product)
            assert warm
            target = (15, 60) if size >= 100_000 else (None, None)
            one_client = (15, 40) if size >= 100_000 else (None, None)  # issue 16
            self.table.latency(f"search_memory (hybrid), {size:,} memories, 16 clients",
                               await self.closed_loop(self.stack.mcp_url, 16, n, product),
                               *target)
            cpu = snapshot(self.search_components())
            passes, running = await self.autovacuum()
            one = await self.closed_loop(self.stack.mcp_url, 1, n // 4, product)
            used = spent(cpu, snapshot(self.search_components()))
            self.table.add(f"autovacuum during the 1-client searches, {size:,} memories",
                           f"{running} running at the start, "
                           f"{(await self.autovacuum())[0] - passes} passes finished")
            self.table.latency(f"search_memory (hybrid), {size:,} memories, 1 client", one,
                               *one_client)
            self.table.add(f"CPU per search, {size:,} memories, 1 client (load average "
                           f"{load_average()})",
                           ", ".join(f"{name} {seconds * 1000 / len(one):.1f} ms"
                                     for name, seconds in used.items()))
            await self.closed_loop(baseline_url, 4, 32, vector)
            self.table.latency(f"baseline: pure-vector search, {size:,} memories, 16 clients",
                               await self.closed_loop(baseline_url, 16, n, vector))

    async def autovacuum(self) -> tuple[int, int]:
        """Autovacuum and autoanalyze passes finished so far over every table, and autovacuum
        workers running now: one that runs during a latency phase shares the 2 cores."""
        row = await self.db.fetchrow(
            "SELECT (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) "
            "        FROM pg_stat_user_tables) AS passes, "
            "       (SELECT count(*) FROM pg_stat_activity "
            "        WHERE backend_type = 'autovacuum worker') AS running")
        assert row is not None
        return int(row["passes"]), int(row["running"])

    def search_components(self) -> list[Component]:
        """Who spends CPU on a search: the MCP server, PostgreSQL, the benchmark's client."""
        return [Component("MCP server", self.stack.children["mcp"].pid),
                Component("PostgreSQL", self.stack.postmaster_pid()),
                this_process("client")]

    def memory(self, when: str) -> None:
        self.table.add(f"resident memory {when}",
                       f"worker {self.stack.rss_mib('worker'):.0f} MiB, "
                       f"MCP server {self.stack.rss_mib('mcp'):.0f} MiB")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return (f"{nproc} CPUs ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average {load_average()}")


def start_baseline(stack: BenchStack) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.baseline_server", str(port)],
                               env=stack.child_env())
    wait_for_port(port, 60, process, "the baseline server")
    return process, f"http://127.0.0.1:{port}/mcp"


async def efficiency(bench: Bench, temporal: TemporalClient, floor: NoopFloor,
                     baseline_url: str) -> list[str]:
    """Issue 16's measures: the burst by component, the floor, acks against the inline design;
    returns the extra report sections."""
    clients, per_client = bench.options.burst_clients, bench.options.burst_saves_per_client
    await floor.run(clients, 4)  # warm-up: the no-op worker's first tasks
    burst = await ingest_burst(bench, temporal, clients, per_client)
    noop_burst = await floor.run(clients, per_client)
    burst_rows(bench.table, burst, noop_burst, clients, per_client)
    if not bench.options.burst_only:
        await acks_against_inline(bench, burst, baseline_url)
    sections = [f"CPU per committed memory by component (burst of {burst.items}; load average "
                f"{load_average()} after it):", "", cpu_table(burst, noop_burst), "",
                "The worker's CPU by thread, same burst:", "", thread_table(burst)]
    if bench.options.profile_worker is not None:
        sections += await profile_burst(bench, temporal, burst, bench.options.profile_worker)
    return sections


async def acks_against_inline(bench: Bench, burst: Burst, baseline_url: str) -> None:
    clients = bench.options.burst_clients
    durable = await bench.save_ack(
        bench.stack.mcp_url, "save_memory", "save_memory acknowledgement, in sequence while "
        "its ingestions run", (1,), {1: ACK_ONE})
    durable[clients] = burst.latencies
    inline = await bench.save_ack(baseline_url, "save_memory_inline",
                                  "baseline: inline save (embed + insert in the call)",
                                  (1, clients))
    versus_inline(bench.table, durable, inline)


async def profile_burst(bench: Bench, temporal: TemporalClient, measured: Burst,
                        output: Path) -> list[str]:
    """Another burst, unmeasured, with py-spy sampling the worker (sampling pauses it); its
    samples share out the measured burst's CPU of each thread group."""
    clients, per_client = bench.options.burst_clients, bench.options.burst_saves_per_client
    try:
        with recording(bench.stack.children["worker"].pid, output):
            profiled = await ingest_burst(bench, temporal, clients, per_client,
                                          name_threads=False)
    except RuntimeError as error:  # py-spy missing or not allowed to attach
        return ["", f"No worker profile: {error}"]
    return ["", f"The worker's CPU by component: the measured burst's CPU per thread group, "
            f"shared out by where py-spy (100 Hz) found each group's threads during a second "
            f"burst of {profiled.items} ({profiled.rate:.1f}/s under the profiler; raw stacks "
            f"in {output}):", "", profile_table(measured, parse_raw(output.read_text()))]


async def run(options: Options) -> str:
    before = machine()
    print(f"machine: {before}\nstarting the stack...", flush=True)
    stack = start_stack()
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        bench, sections = await measure(stack, options, helpers)
    finally:
        for process in helpers:
            stop_process(process, 30)
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)
    report = "\n".join([f"Machine: {before}", f"Load average at the end: {load_average()}", "",
                        bench.table.markdown(), "", *sections])
    if options.output is not None:
        options.output.write_text(report + "\n")
    return report


async def measure(stack: BenchStack, options: Options,
                  helpers: list[subprocess.Popen[bytes]]) -> tuple[Bench, list[str]]:
    """Every phase on one stack; bench-only servers it starts go into ``helpers``."""
    db = await create_pool(stack.postgres_url(), min_size=1, max_size=2)
    bench = Bench(stack, options, db)
    whole_run = MachineShare(ours(stack))
    try:
        bytecode = "bytecode cached" if bytecode_cached() else "no bytecode cache"
        startup = time_serve_startup(stack)
        bench.table.add("MCP server start-up (`serve` spawned -> HTTP port open, model "
                        f"loaded; {bytecode})", f"{startup:.2f} s", "< 2 s", startup < 2)
        bench.memory("at rest")
        bench.check_speed("at the start")
        baseline, baseline_url = start_baseline(stack)
        helpers.append(baseline)
        if options.search_only:
            await search_phase(bench, baseline_url)
            bench.report_speed()
            return bench, []
        helpers.append(start_noop_worker(stack))
        temporal = await TemporalClient.connect(stack.temporal_address)
        await bench.closed_loop(stack.mcp_url, 4, 40, bench.save)  # warm-up
        sections = await efficiency(bench, temporal, NoopFloor(temporal, helpers[-1], stack),
                                    baseline_url)
        if options.burst_only:
            bench.table.add("machine during the whole run", whole_run.describe())
            bench.report_speed()
            return bench, sections
        await bench.save_ack(stack.mcp_url, "save_memory", "save_memory acknowledgement", (32,))
        await bench.save_to_searchable()
        await bench.throughput()
        bench.memory("after ingestion")
        bench.check_speed("before the searches")
        await search_phase(bench, baseline_url)
        bench.table.add("machine during the whole run", whole_run.describe())
        bench.report_speed()
    finally:
        await db.close()
    return bench, sections


def ours(stack: BenchStack) -> list[Component]:
    """The benchmark, everything it started (the stack, bench-only servers, py-spy) and the
    PostgreSQL that `up` started but pg_ctl detached."""
    return [Component("benchmark", os.getpid()), Component("postgres", stack.postmaster_pid())]


async def search_phase(bench: Bench, baseline_url: str) -> None:
    machine_use = MachineShare(ours(bench.stack))
    loader = BulkLoader(bench.stack.postgres_url(),
                        LocalEmbedder(bench.stack.data_dir / "models",
                                      Settings().embedding_model),
                        bench.options.unique_vectors)
    await bench.search(loader, baseline_url)
    bench.table.add("bulk embedding for the search corpus",
                    f"{bench.options.unique_vectors} texts in {loader.embed_seconds:.0f} s")
    bench.table.add("machine during the search phase (bulk load and searches)",
                    machine_use.describe())
    bench.memory("after search")
