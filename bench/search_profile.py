"""Where one search's time goes at scale, layer by layer (issue 16):

    python -m bench.search_profile [--size 100000] [--searches 200] [--root DIR] [--py-spy F]

On a `team-memory up` stack (a new temporary one, or ``--root``'s, kept for the next run) with
``--size`` bulk-loaded memories (bench/bulk.py), it prints:

- one MCP client searching over HTTP: latency, and the CPU per search of the MCP server,
  PostgreSQL and the client (from /proc: far less sensitive to other people's load than
  latency); with ``--py-spy FILE`` the MCP server is sampled meanwhile and its samples are
  shared out by layer;
- the same search in this process, stage by stage (API-key lookup, query embedding, the
  transaction and each statement, fusion, result framing), medians;
- EXPLAIN (ANALYZE, BUFFERS) of the search's statements, run as the application role under
  Row-Level Security in the caller's transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import statistics
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bench.bulk import BulkLoader
from bench.corpus import question
from bench.cpu import Component, snapshot, spent, this_process
from bench.run import call, client_for, load_average
from bench.stack import BenchStack, InProcess, in_process, start_stack
from bench.worker_profile import py_spy
from mcp_server.search import recall
from mcp_server.server import _result
from mcp_server.views import HitView, SearchView
from team_memory.stack import LOCAL_TENANT
from team_memory_core.embedder import LocalEmbedder, embed_async
from team_memory_core.rules import ranking
from team_memory_core.rules.framing import DATA_NOTE, QUOTED_NOTE, quoted_memory
from team_memory_core.store import search
from team_memory_core.tenants import authenticate

T = TypeVar("T")
Timings = dict[str, list[float]]


async def through_mcp(stack: BenchStack, searches: int, spy_to: Path | None) -> list[str]:
    """One client, back to back: latency and CPU per search by process."""
    questions = itertools.count(10_000)
    mcp_pid = stack.children["mcp"].pid
    components = [Component("MCP server", mcp_pid),
                  Component("PostgreSQL", stack.postmaster_pid()), this_process("client")]
    latencies: list[float] = []
    async with client_for(stack.mcp_url, stack.api_key) as client:
        for _ in range(20):
            await call(client, "search_memory", query=question(next(questions)), limit=5)
        with sampling(mcp_pid, spy_to):
            before = snapshot(components)
            for _ in range(searches):
                started = time.perf_counter()
                await call(client, "search_memory", query=question(next(questions)), limit=5)
                latencies.append(time.perf_counter() - started)
            used = spent(before, snapshot(components))
    ms = sorted(1000 * s for s in latencies)
    lines = [f"through MCP over HTTP, 1 client, {searches} searches (load average "
             f"{load_average()}): p50 {statistics.median(ms):.1f} ms, "
             f"p90 {ms[int(0.9 * len(ms))]:.1f} ms, p99 {ms[int(0.99 * len(ms))]:.1f} ms",
             "CPU per search: " + ", ".join(f"{name} {seconds * 1000 / searches:.2f} ms"
                                            for name, seconds in used.items())]
    if spy_to is not None and spy_to.exists():
        lines += ["MCP server samples by layer (innermost matching frame):",
                  *layers(spy_to.read_text())]
    return lines


@contextlib.contextmanager
def sampling(pid: int, output: Path | None) -> Iterator[None]:
    binary = py_spy()
    if output is None or binary is None:
        yield
        return
    process = subprocess.Popen([binary, "record", "--pid", str(pid), "--rate", "250",
                                "--format", "raw", "--output", str(output), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    try:
        yield
    finally:
        process.send_signal(2)
        process.wait(60)


# Layer of a sample: the first of these whose marker is in any of its frames (what the
# request was doing at the time: an operation's inner frames are libraries and the
# standard library, its outer frames the SDK, HTTP and our middleware).
LAYERS = [
    ("API-key lookup (AuthGate)", "Authenticator.principal"),
    ("query embedding (onnxruntime, tokenizer)", "team_memory_core/embedder"),
    ("search statements (store/search.py through asyncpg)", "team_memory_core/store/search.py"),
    ("search transaction: pool, BEGIN/scope/COMMIT, active model", "team_memory_core/store/"),
    ("search transaction: pool, BEGIN/scope/COMMIT, active model", "active_model.py"),
    ("fusion (rules/ranking.py)", "rules/ranking.py"),
    ("hits, framing and views", "memory_hit"),
    ("hits, framing and views", "mcp_server/views.py"),
    ("hits, framing and views", "rules/framing.py"),
    ("search tool and Recall, other", "mcp_server/search/"),
    ("search tool and Recall, other", "mcp_server/server.py"),
    ("asyncpg, other", "(asyncpg/"),
    ("MCP SDK (JSON-RPC, session, argument and result validation)", "(mcp/"),
    ("MCP SDK (JSON-RPC, session, argument and result validation)", "(mcp_types/"),
    ("HTTP (uvicorn, starlette, h11)", "(uvicorn/"),
    ("HTTP (uvicorn, starlette, h11)", "(starlette/"),
    ("HTTP (uvicorn, starlette, h11)", "(h11/"),
    ("our middleware (outages, workspace, AuthGate)", "mcp_server/"),
]
IDLE = ("EpollSelector.select", "_worker (concurrent/futures/thread.py", "Condition.wait")


def layers(raw: str) -> list[str]:
    """Samples of each layer, as shares of the samples that were not idle waits."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or any(idle in frames[-1] for idle in IDLE):
            continue
        counts[_layer(frames)] += int(count)
    total = sum(counts.values()) or 1
    return [f"  {share:5.1%}  {name}" for name, share in
            ((n, c / total) for n, c in counts.most_common())]


def _layer(frames: list[str]) -> str:
    for name, marker in LAYERS:
        if any(marker in frame for frame in frames):
            return name
    return "asyncio loop, standard library, other"


class Stages:
    """Wall time of each instrumented function, per call."""

    def __init__(self) -> None:
        self.times: Timings = defaultdict(list)

    def timed(self, name: str, function: Callable[..., Awaitable[T]]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                self.times[name].append(time.perf_counter() - started)
        return wrapper

    def timed_sync(self, name: str, function: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.times[name].append(time.perf_counter() - started)
        return wrapper

    def transaction(self, open_tx: Callable[..., Any]) -> Callable[..., Any]:
        @contextlib.asynccontextmanager
        async def wrapper(*args: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            async with open_tx(*args) as opened:
                self.times["transaction: acquire, BEGIN, search_prelude"].append(
                    time.perf_counter() - started)
                yield opened
                ended = time.perf_counter()
            self.times["transaction: COMMIT, release"].append(time.perf_counter() - ended)
        return wrapper


@contextlib.contextmanager
def instrumented(stages: Stages) -> Iterator[None]:
    patches = [
        (recall, "embed_async", stages.timed("query embedding", embed_async)),
        (search, "search_transaction", stages.transaction(search.search_transaction)),
        (search, "search_prelude", stages.timed(
            "SQL: search_prelude (active model, pending memories, query words)",
            search.search_prelude)),
        (search, "hybrid_search", stages.timed("SQL: hybrid_search", search.hybrid_search)),
        (ranking, "fuse", stages.timed_sync("fusion", ranking.fuse)),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, replacement in patches:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def tool_result(hits: list[Any], searched: str) -> str:
    """What the search_memory tool adds after the search (server.py), serialised."""
    quoted = [quoted_memory(h, h.snippet, one_line=True, tokens=f"~{h.tokens}") for h in hits]
    view = SearchView(note=DATA_NOTE, project=searched,
                      results=[HitView.of(h, searched) for h in hits])
    result = _result(view, "\n".join([QUOTED_NOTE, *quoted]))
    return json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True))


async def in_this_process(inproc: InProcess, key: str, searches: int) -> list[str]:
    service, principal = inproc.service, inproc.principal
    stages = Stages()
    questions = itertools.count(20_000)
    for _ in range(20):
        await service.search(principal, question(next(questions)), limit=5)
    with instrumented(stages):
        for _ in range(searches):
            started = time.perf_counter()
            await authenticate(inproc.pool, key)
            stages.times["API-key lookup (authenticate)"].append(time.perf_counter() - started)
            started = time.perf_counter()
            hits = await service.search(principal, question(next(questions)), limit=5)
            stages.times["search, whole (Recall.search)"].append(time.perf_counter() - started)
            started = time.perf_counter()
            tool_result(hits, service.resolve_project(principal, None))
            stages.times["result framing + JSON (server.py)"].append(
                time.perf_counter() - started)
    return [f"in process, {searches} searches, limit 5 (median / p90 ms, calls per search):",
            *(f"  {name}: {statistics.median(v) * 1000:.2f} / "
              f"{sorted(v)[int(0.9 * len(v))] * 1000:.2f} ({len(v) / searches:g})"
              for name, v in stages.times.items())]


class Explaining:
    """A connection whose fetches are also run under EXPLAIN (ANALYZE, BUFFERS)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.plans: list[str] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        plan = await self.conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *args)
        self.plans.append("\n".join(row[0] for row in plan))
        return list(await self.conn.fetch(sql, *args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


async def explain(inproc: InProcess) -> list[str]:
    service, principal = inproc.service, inproc.principal
    text = question(30_000)
    vector = (await embed_async(service.model.current, [text]))[0]
    filters = service.filters(principal, None, None, None, None, None, False)
    # The prelude is one function call: EXPLAIN would show its call, not its statements.
    async with search.search_transaction(service.pool, principal, text, filters, 64,
                                         service.retriever.per_side(5)) as (conn, prelude):
        explaining = Explaining(conn)
        await service.retriever.candidates(
            explaining, text, vector, filters,
            await service.pending_vectors.vectors(service.model.current, prelude.pending, 4),
            limit=5)
    return [f"EXPLAIN (ANALYZE, BUFFERS) as the application role under RLS, query {text!r}:",
            *(f"--- statement {i + 1}\n{plan}" for i, plan in enumerate(explaining.plans))]


async def profile(args: argparse.Namespace) -> None:
    if args.root is not None:
        args.root.mkdir(parents=True, exist_ok=True)
    stack = start_stack(args.root)
    try:
        loader = BulkLoader(stack.postgres_url(),
                            LocalEmbedder(stack.data_dir / "models", "all-MiniLM-L6-v2"),
                            args.unique_vectors)
        added = await loader.fill(LOCAL_TENANT, args.size)
        print(f"bulk-loaded {added} rows ({args.size} in the tenant)", flush=True)
        print("\n".join(await through_mcp(stack, args.searches, args.py_spy)), flush=True)
        inproc = await in_process(stack)
        try:
            print("\n".join(await in_this_process(inproc, stack.api_key, args.searches)))
            if args.explain:
                print("\n".join(await explain(inproc)))
        finally:
            await inproc.pool.close()
    finally:
        stack.stop()
        if args.root is None:
            shutil.rmtree(stack.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--unique-vectors", type=int, default=5_000)
    parser.add_argument("--root", type=Path, help="stack directory to reuse and keep")
    parser.add_argument("--py-spy", type=Path, metavar="FILE",
                        help="sample the MCP server during the MCP searches (raw stacks)")
    parser.add_argument("--explain", action="store_true")
    asyncio.run(profile(parser.parse_args()))


if __name__ == "__main__":
    main()
