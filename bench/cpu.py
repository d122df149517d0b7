"""CPU time of the stack's own processes, read from /proc (through psutil).

A component is one or more root processes; its CPU is the user + system time of every process
in their trees, the threads of each included, plus what their exited children left in
cutime/cstime (a PostgreSQL backend that ends during the window is counted by the postmaster
that reaped it). Deltas of two snapshots give the CPU spent in between, whatever else runs on
the machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid``, its live descendants and its reaped children."""
    try:
        process = psutil.Process(pid)
        times = process.cpu_times()
        children = process.children()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return 0.0
    own = float(times.user + times.system + times.children_user + times.children_system)
    return own + sum(tree_cpu_seconds(child.pid) for child in children)


def own_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``'s own threads only (not its children)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@dataclass(frozen=True)
class Component:
    """A named part of the stack: whole process trees, or one process without its children
    (the benchmark process itself, whose children include the stack under test)."""

    name: str
    pid: int
    with_children: bool = True

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid) if self.with_children else own_cpu_seconds(self.pid)


def this_process(name: str) -> Component:
    return Component(name, os.getpid(), with_children=False)


Snapshot = dict[str, float]


def snapshot(components: list[Component]) -> Snapshot:
    return {component.name: component.cpu_seconds() for component in components}


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> Snapshot:
    """CPU seconds per component between two snapshots."""
    return {name: after[name] - before[name] for name in before}


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread of ``pid``: its kernel name (comm) and CPU seconds so far."""
    threads: dict[int, tuple[str, float]] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        threads[int(task.name)] = (name, (utime + stime) / ticks)
    return threads


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have been busy (anyone's processes) since boot."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq)


class MachineShare:
    """How busy the whole machine was since creation, and how much of that was ``ours``."""

    def __init__(self, ours: list[Component]) -> None:
        self._ours = ours
        self._start = self._read()

    def _read(self) -> tuple[float, float, float]:
        return (time.monotonic(), machine_busy_seconds(),
                sum(component.cpu_seconds() for component in self._ours))

    def describe(self) -> str:
        now = self._read()
        wall, busy, ours = (b - a for a, b in zip(self._start, now, strict=True))
        return (f"{busy / wall:.2f} cores busy on average: ours {ours / wall:.2f}, "
                f"other processes {(busy - ours) / wall:.2f}")


def reference_loop_seconds(steps: int = 5_000_000) -> float:
    """CPU seconds of a fixed pure-Python loop (the fastest of two): the same work in every
    run, so a larger figure means a slower machine at that moment (a virtual machine whose
    host is busy runs the same code up to twice as slowly), not slower code."""
    timings = []
    for _ in range(2):
        started = time.process_time()
        total = 0
        for step in range(steps):
            total += step
        timings.append(time.process_time() - started)
    return min(timings)
