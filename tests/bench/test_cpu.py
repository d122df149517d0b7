"""The /proc reader the benchmark divides CPU per memory with: whole process trees, reaped
children included, the benchmark's own process without its children."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from bench.cpu import (
    Component,
    MachineShare,
    reference_loop_seconds,
    snapshot,
    spent,
    this_process,
    thread_cpu_seconds,
)

BURN = "import os\nx = sum(i * i for i in range(4_000_000))\nt = os.times()\n"
# A parent with two children: one burns and exits (reaped: its time moves to the parent's
# cutime), one burns and stays alive. Each child reports its own CPU seconds; the parent
# reports its own and then waits for stdin to close.
PARENT = f"""
import os, subprocess, sys
burn = {BURN!r}
done = subprocess.run([sys.executable, "-c", burn + "print(t.user + t.system)"],
                      capture_output=True, text=True, check=True)
alive = subprocess.Popen([sys.executable, "-c", burn + "print(t.user + t.system, flush=True)\\n"
                          "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
print(done.stdout.strip(), alive.stdout.readline().strip(), flush=True)
sys.stdin.read()
alive.stdin.close()
alive.wait()
"""


@pytest.fixture
def family() -> Iterator[tuple[subprocess.Popen[str], float, float]]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdin is not None
    try:
        reaped, alive = (float(x) for x in parent.stdout.readline().split())
        yield parent, reaped, alive
    finally:
        parent.stdin.close()
        parent.wait(30)


def test_a_tree_counts_reaped_and_live_children(
        family: tuple[subprocess.Popen[str], float, float]) -> None:
    parent, reaped, alive = family
    tree = Component("tree", parent.pid).cpu_seconds()
    alone = Component("alone", parent.pid, with_children=False).cpu_seconds()
    assert reaped > 0.05 and alive > 0.05  # each child did measurable work
    assert tree >= alone + reaped + alive - 0.03  # /proc counts in 10 ms ticks
    assert alone < reaped  # the parent itself only started them


def test_a_vanished_process_counts_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert Component("gone", gone.pid).cpu_seconds() == 0.0


def test_spent_is_the_difference_per_component() -> None:
    me = this_process("client")
    before = snapshot([me])
    sum(i * i for i in range(2_000_000))
    after = snapshot([me])
    assert spent(before, after)["client"] == pytest.approx(after["client"] - before["client"])
    assert spent(before, after)["client"] > 0


def test_each_live_thread_has_its_own_cpu_time() -> None:
    started, release = threading.Event(), threading.Event()

    def busy() -> None:
        sum(i * i for i in range(2_000_000))
        started.set()
        release.wait(30)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        started.wait(30)
        threads = thread_cpu_seconds(os.getpid())
        assert thread.native_id in threads
        assert threads[thread.native_id][1] > 0
    finally:
        release.set()
        thread.join()


def test_machine_share_counts_our_cpu_inside_the_machines() -> None:
    share = MachineShare([this_process("client")])
    sum(i * i for i in range(5_000_000))
    busy, ours, others = (float(word) for word in re.findall(r"-?\d+\.\d+", share.describe()))
    assert ours > 0
    assert busy >= ours - 0.1  # the machine's ticks include ours (a few 10 ms ticks aside)
    assert others == pytest.approx(busy - ours, abs=0.011)


def test_the_speed_check_measures_cpu_time_in_proportion_to_its_work() -> None:
    """CPU time, not wall time: a sleep inside would not count, and ten times the steps
    take several times the time on any machine."""
    small, large = reference_loop_seconds(100_000), reference_loop_seconds(1_000_000)
    assert 0 < small < large
    assert large > 4 * small
