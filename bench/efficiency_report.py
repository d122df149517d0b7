"""The efficiency rows and tables, with issue 16's acceptance targets."""

from __future__ import annotations

from bench.efficiency import LABELS, Burst
from bench.stats import Table, markdown_table, met_cell, percentile_ms
from bench.worker_profile import Sample, cpu_by_component

WORKER_MAX_MS = 15.0
WHOLE_MAX_MS = 60.0
FLOOR_SHARE = 0.8
ACK_ONE = (15.0, 50.0)  # p50, p99 ms at one client
ACK_MANY_P99 = 150.0
FLOOR_COMPONENTS = {"worker": "the no-op worker", "temporal": "",
                    "client": "starting the workflows"}


def burst_rows(table: Table, burst: Burst, floor: Burst, clients: int, per_client: int) -> None:
    needed = FLOOR_SHARE * floor.rate
    table.add(f"ingestion burst: {clients} MCP clients x {per_client} saves, committed memories/s",
              f"{burst.rate:.1f}/s ({burst.items} committed in {burst.seconds:.1f} s); "
              f"{burst.whole_ms:.0f} ms CPU per committed memory (by component below)",
              f">= {FLOOR_SHARE:g} x no-op rate = {needed:.1f}/s", burst.rate >= needed)
    orchestration = floor.ms_per_item("temporal") + floor.ms_per_item("worker")
    table.add(f"floor: no-op workflow of 3 local activities, {clients} starters x {per_client}, "
              "same Temporal server",
              f"{floor.rate:.1f} workflows/s; {orchestration:.1f} ms CPU per workflow (server "
              f"{floor.ms_per_item('temporal'):.1f} + worker {floor.ms_per_item('worker'):.1f})")
    table.add("committed memories/s / no-op workflows/s", f"{burst.rate / floor.rate:.2f}",
              f">= {FLOOR_SHARE:g}", burst.rate >= needed)
    table.latency(f"save_memory acknowledgement, {clients} clients, during the burst",
                  burst.latencies, p99_max=ACK_MANY_P99)
    table.latency(f"floor: no-op workflow start (client.start_workflow), {clients} starters",
                  floor.latencies)
    table.add("machine during the burst", machine_use(burst))


def machine_use(burst: Burst) -> str:
    ours = sum(burst.cpu.values())
    return (f"{burst.cores(burst.machine_busy):.2f} cores busy on average: the stack and its "
            f"client {burst.cores(ours):.2f}, other processes "
            f"{burst.cores(burst.machine_busy - ours):.2f}")


def versus_inline(table: Table, durable: dict[int, list[float]],
                  inline: dict[int, list[float]]) -> None:
    parts, faster = [], True
    for clients in sorted(durable.keys() & inline.keys()):
        ours, theirs = percentile_ms(durable[clients], 50), percentile_ms(inline[clients], 50)
        parts.append(f"{clients} client(s): {ours:.1f} vs {theirs:.1f} ms")
        faster = faster and ours < theirs
    table.add("save_memory ack p50, durable vs inline baseline", "; ".join(parts),
              "durable faster", faster)


def cpu_table(burst: Burst, floor: Burst) -> str:
    rows = [[LABELS[name], f"{burst.ms_per_item(name):.1f} ms", _floor_cell(floor, name),
             *_target(name, burst.ms_per_item(name))] for name in LABELS]
    floor_whole = sum(floor.ms_per_item(name) for name in FLOOR_COMPONENTS)
    rows.append(["**whole stack**", f"**{burst.whole_ms:.1f} ms**", f"{floor_whole:.1f} ms",
                 *_target("whole", burst.whole_ms)])
    return markdown_table(["Component", "IngestMemory: CPU per committed memory",
                           "no-op floor: CPU per workflow", "Target", "Met"], rows)


def _floor_cell(floor: Burst, name: str) -> str:
    if name not in FLOOR_COMPONENTS:
        return "not involved"
    note = FLOOR_COMPONENTS[name]
    return f"{floor.ms_per_item(name):.1f} ms" + (f" ({note})" if note else "")


def _target(name: str, ms: float) -> list[str]:
    limit = {"worker": WORKER_MAX_MS, "whole": WHOLE_MAX_MS}.get(name)
    if limit is None:
        return ["", ""]
    return [f"<= {limit:g} ms", met_cell(ms <= limit)]


def thread_table(burst: Burst) -> str:
    return _per_memory_table("Worker thread group", burst.worker_threads, burst.items)


def profile_table(burst: Burst, samples: list[Sample]) -> str:
    by_component = cpu_by_component(samples, burst.worker_pid, burst.worker_thread_cpu,
                                    burst.worker_threads)
    return _per_memory_table("Worker component", by_component, burst.items)


def _per_memory_table(what: str, seconds_by_row: dict[str, float], items: int) -> str:
    total = sum(seconds_by_row.values())
    rows = [[name, f"{seconds * 1000 / items:.1f} ms", f"{seconds / total:.0%}"]
            for name, seconds in sorted(seconds_by_row.items(), key=lambda kv: -kv[1])]
    return markdown_table([what, "CPU per committed memory", "share of the worker"], rows)
