"""Single-node figures for docs/scaling.md, measured against a running `team-memory up`.

    python docs/measure_single_node.py --url http://127.0.0.1:8765/mcp --key tm_... \
        --temporal 127.0.0.1:7233 --memories 3000

Saves N distinct memories through the MCP endpoint (16 in flight), times each acknowledgement,
waits until every ingestion workflow has committed, then times searches. A quick measurement
for the capacity table, not the benchmark suite.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import time
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from team_memory.embedded import temporal_binary

TECH = ["PostgreSQL", "Redis", "Kafka", "gRPC", "GraphQL", "Svelte", "React", "Terraform",
        "Kubernetes", "S3", "SQS", "Temporal", "OpenTelemetry", "Rust", "Go", "Python"]
PURPOSE = ["caching", "billing", "search", "auth", "audit logs", "invoices", "exports",
           "notifications", "rate limiting", "feature flags", "backups", "reporting"]


def text(i: int, rng: random.Random) -> str:
    return (f"Service {i % 97} of team {i % 13} uses {rng.choice(TECH)} for "
            f"{rng.choice(PURPOSE)}; decided in review {i} with a {rng.randint(2, 90)} day "
            "rollback window")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def running(temporal: str) -> int:
    out = subprocess.run([str(temporal_binary()), "workflow", "count", "--address", temporal,
                          "--query", "WorkflowType='IngestMemory' AND ExecutionStatus='Running'"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1])


async def all_committed(temporal: str) -> None:
    while True:
        if not running(temporal):
            return
        await asyncio.sleep(0.5)


async def timed(client: Client, tool: str, **args: Any) -> float:
    started = time.perf_counter()
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--temporal", required=True)
    parser.add_argument("--memories", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rng = random.Random(7)
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {args.key}"}, timeout=60)
    async with Client(streamable_http_client(args.url, http_client=http)) as client:
        solo = [await timed(client, "save_memory", content=text(10**6 + i, rng), project="bench")
                for i in range(50)]
        await all_committed(args.temporal)
        acks: list[float] = []
        queue = iter(range(args.memories))
        started = time.perf_counter()

        async def saver() -> None:
            for i in queue:
                acks.append(await timed(client, "save_memory", content=text(i, rng),
                                        project="bench"))

        await asyncio.gather(*(saver() for _ in range(args.concurrency)))
        acked = time.perf_counter() - started
        await all_committed(args.temporal)
        committed = time.perf_counter() - started
        searches = [await timed(client, "search_memory", query=f"who uses {t} for {p}?",
                                project="bench", limit=5)
                    for t in TECH for p in PURPOSE[:6]]
    print(f"sequential save ack: p50 {percentile(solo, 50):.1f} ms, "
          f"p95 {percentile(solo, 95):.1f} ms")
    print(f"{args.memories} saves, {args.concurrency} in flight: ack p50 "
          f"{percentile(acks, 50):.1f} ms, p95 {percentile(acks, 95):.1f} ms; "
          f"{args.memories / acked:.1f} acks/s; all committed after {committed:.1f} s = "
          f"{args.memories / committed:.1f} commits/s")
    print(f"search at {args.memories + 50} memories ({len(searches)} queries): p50 "
          f"{percentile(searches, 50):.1f} ms, p95 {percentile(searches, 95):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
