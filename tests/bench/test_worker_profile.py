"""Charging py-spy samples and per-thread CPU to the worker's components."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from bench.worker_profile import (
    EMBED_THREADS,
    ENDED,
    MAIN_THREAD,
    NATIVE_POOL,
    OTHER_PYTHON,
    STDLIB,
    TEMPORAL_CORE,
    UNNAMED,
    component_of,
    cpu_by_component,
    cpu_by_thread_group,
    is_wait,
    parse_raw,
    recording,
    thread_group,
    thread_spent,
)

STD = sysconfig.get_path("stdlib")
SITE = "/venv/lib/python3.11/site-packages"
OURS = str(Path(__file__).resolve().parents[2])
LOOP = [f"Runner.run ({STD}/asyncio/runners.py:118)",
        f"BaseEventLoop._run_once ({STD}/asyncio/base_events.py:1922)",
        f"Handle._run ({STD}/asyncio/events.py:80)"]
ENTRY = [f"worker ({OURS}/team_memory/cli.py:119)"]
POOL = [f"Thread.run ({STD}/threading.py:982)",
        f"_worker ({STD}/concurrent/futures/thread.py:83)",
        f"_WorkItem.run ({STD}/concurrent/futures/thread.py:58)"]


def line(tid: int, name: str | None, frames: list[str], count: int) -> str:
    head = f"thread ({tid})" + (f": {name}" if name else "")
    return ";".join([head, *frames]) + f" {count}"


def test_a_sample_goes_to_the_innermost_library_frame() -> None:
    frames = [*ENTRY, *LOOP,
              f"IngestActivities.commit_memory ({OURS}/activities/ingest.py:90)",
              f"Connection.execute ({SITE}/asyncpg/connection.py:377)",
              f"_SelectorSocketTransport.write ({STD}/asyncio/selector_events.py:1057)"]
    assert component_of(frames) == "asyncpg"
    assert component_of(frames[:-2]) == "our code"


def test_the_event_loops_own_work_is_not_charged_to_the_entry_point() -> None:
    frames = [*ENTRY, *LOOP[:2], f"EpollSelector.select ({STD}/selectors.py:468)"]
    assert component_of([*ENTRY, *LOOP, f"Task.__step ({STD}/asyncio/tasks.py:267)"]) == STDLIB
    assert component_of(frames) == STDLIB
    # uvloop runs the loop in C: its work shows as the Runner.run frame itself.
    assert component_of([*ENTRY, LOOP[0]]) == STDLIB
    assert component_of([*ENTRY, LOOP[0],
                         f"IngestActivities.ingest_memory ({OURS}/activities/ingest.py:60)"]) \
        == "our code"


def test_namespace_packages_keep_their_name() -> None:
    frames = [*POOL, f"Tracer.start ({SITE}/opentelemetry/trace/__init__.py:10)"]
    assert component_of(frames) == "OpenTelemetry"
    assert component_of([*POOL, f"x ({SITE}/google/protobuf/message.py:1)"]) == "protobuf"


def test_a_parked_thread_is_a_wait_not_work() -> None:
    assert is_wait([*POOL[:1], f"_worker ({STD}/concurrent/futures/thread.py:81)"])
    assert is_wait([*ENTRY, *LOOP[:2], f"EpollSelector.select ({STD}/selectors.py:468)"])
    assert not is_wait([*POOL, f"Session.run ({SITE}/onnxruntime/capi/x.py:406)"])


def test_parse_raw_reads_thread_ids_names_and_counts() -> None:
    raw = "\n".join([line(7, "MainThread", ENTRY, 3), line(9, None, [], 5), "garbage"])
    samples = parse_raw(raw)
    assert [(s.tid, s.thread, s.count) for s in samples] == [(7, "MainThread", 3), (9, None, 5)]
    assert samples[0].frames == ENTRY


@pytest.mark.parametrize(("tid", "comm", "names", "group"), [
    (100, "python", {}, MAIN_THREAD),
    (101, "tokio-rt-worker", {}, TEMPORAL_CORE),
    (102, "python", {}, UNNAMED),
    (102, "python", {100: "MainThread"}, NATIVE_POOL),
    (103, "python", {103: "asyncio_0"}, EMBED_THREADS),
    (104, "python", {104: "uvloop_0"}, EMBED_THREADS),  # the worker runs on uvloop
    (105, "python", {105: "Thread-3"}, OTHER_PYTHON),
])
def test_thread_groups(tid: int, comm: str, names: dict[int, str], group: str) -> None:
    assert thread_group(tid, 100, comm, names) == group


def test_thread_cpu_is_grouped_and_ended_threads_are_their_own_row() -> None:
    spent = thread_spent({100: ("python", 1.0), 101: ("tokio-rt-worker", 0.5)},
                         {100: ("python", 3.0), 101: ("tokio-rt-worker", 1.5),
                          103: ("python", 0.25)})
    groups = cpu_by_thread_group(100, spent, 3.5, {100: "MainThread", 103: "asyncio_0"})
    assert groups == pytest.approx({MAIN_THREAD: 2.0, TEMPORAL_CORE: 1.0, EMBED_THREADS: 0.25,
                                    ENDED: 0.25})


def test_each_groups_cpu_is_shared_out_by_its_non_waiting_samples() -> None:
    embed = [*POOL, f"Session.run ({SITE}/onnxruntime/capi/x.py:406)"]
    tokenize = [*POOL, f"encode_batch ({SITE}/tokenizers/__init__.py:1)"]
    parked = [*POOL[:1], f"_worker ({STD}/concurrent/futures/thread.py:81)"]
    pg = [*ENTRY, *LOOP, f"Connection.execute ({SITE}/asyncpg/connection.py:377)"]
    samples = parse_raw("\n".join([
        line(100, "MainThread", pg, 10), line(103, "asyncio_0", embed, 30),
        line(103, "asyncio_0", tokenize, 10), line(103, "asyncio_0", parked, 500),
        line(104, None, [], 50)]))
    spent = {100: ("python", 1.0), 103: ("python", 2.0), 104: ("python", 4.0),
             101: ("tokio-rt-worker", 0.5)}
    groups = cpu_by_thread_group(100, spent, 7.5, {100: "MainThread", 103: "asyncio_0"})
    assert cpu_by_component(samples, 100, spent, groups) == pytest.approx({
        "asyncpg": 1.0, "onnxruntime": 1.5, "tokenizers": 0.5,
        "onnxruntime (intra-op pool threads)": 4.0, "Temporal core (Rust)": 0.5})


def test_a_profile_that_cannot_be_taken_says_why(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(RuntimeError, match="py-spy wrote no profile"), \
            recording(gone.pid, tmp_path / "worker.txt"):
        time.sleep(2)  # py-spy retries the attach for a moment before it gives up
