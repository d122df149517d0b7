"""Where the worker's CPU goes: by thread (from /proc) and by library (py-spy samples).

The thread split needs no profiler: /proc gives each thread's CPU time, and one `py-spy dump`
after the measured window names the Python threads (the kernel calls them all "python").
Threads without a Python name are native: the Temporal core's Rust threads (the kernel knows
their names) and onnxruntime's intra-op pool (numpy's BLAS threads exist too, idle).

The library split comes from a `py-spy record` of the worker during a separate, unmeasured
burst (sampling pauses the process). py-spy counts a thread as active when the kernel says it
is runnable, which on a loaded machine includes time spent waiting for a CPU: a pool thread
just woken shows up at its queue wait. So samples whose innermost frame is such a wait are
dropped, the rest are charged to the innermost frame outside the standard library, and each
thread group's shares are scaled by that group's CPU time from /proc.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sysconfig
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

MAIN_THREAD = "main thread: asyncio loop (activities, asyncpg, SDK Python side, our code)"
WORKFLOW_THREADS = "workflow activations (temporal_workflow_* threads)"
EMBED_THREADS = "embedding calls (asyncio.to_thread executor)"
OTHER_PYTHON = "other Python threads"
TEMPORAL_CORE = "Temporal core (Rust threads)"
NATIVE_POOL = "native threads without Python (onnxruntime's intra-op pool)"
UNNAMED = "other threads (Python names unknown: py-spy unavailable)"
ENDED = "threads that ended during the window"
_RUST_NAMES = ("tokio", "temporal", "workflow-proces")
# The default executor's threads (asyncio.to_thread): asyncio's, or uvloop's (the worker's loop).
_EXECUTOR_NAMES = ("asyncio_", "uvloop_")
_DUMP_THREAD = re.compile(r'^Thread (\d+) \([^)]*\): "(.*)"', re.MULTILINE)
_RAW_THREAD = re.compile(r"^thread \((\d+)\)(?:: (.*))?$")

# Innermost non-stdlib frame's top-level package -> component.
LIBRARIES = {
    "onnxruntime": "onnxruntime", "tokenizers": "tokenizers", "numpy": "numpy",
    "temporalio": "Temporal SDK (Python side)", "google": "protobuf",
    "asyncpg": "asyncpg", "pgvector": "asyncpg",
    "pydantic": "pydantic", "pydantic_core": "pydantic",
    "opentelemetry": "OpenTelemetry",
    "team_memory": "our code", "activities": "our code", "workflows": "our code",
    "mcp_server": "our code",
}
STDLIB = "asyncio loop and standard library"
_CHECKOUT = str(Path(__file__).resolve().parent.parent) + "/"
# Where the event loop or a thread pool hands over to the code it runs: stdlib frames between
# one of these and the leaf are the machinery's own cost, not the caller's.
# On uvloop the loop is C code under ``Runner.run``: a sample whose innermost Python frame is
# that call is the loop's own work (its I/O and callback dispatch).
DISPATCH = {"Handle._run", "BaseEventLoop._run_once", "_WorkItem.run", "Thread.run",
            "Runner.run"}
# Native groups have no Python frames: the whole group is one component.
NATIVE_COMPONENTS = {TEMPORAL_CORE: "Temporal core (Rust)",
                     NATIVE_POOL: "onnxruntime (intra-op pool threads)",
                     ENDED: ENDED, UNNAMED: UNNAMED}
# Innermost frames of a thread parked until woken (function, file).
WAITS = {("_worker", "concurrent/futures/thread.py"), ("EpollSelector.select", "selectors.py"),
         ("Condition.wait", "threading.py"), ("Queue.get", "queue.py")}
_STDLIB_DIR = sysconfig.get_path("stdlib") + "/"

ThreadCpu = dict[int, tuple[str, float]]  # thread id -> (kernel name, CPU seconds)


def py_spy() -> str | None:
    beside = Path(sysconfig.get_path("scripts")) / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def python_thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from one `py-spy dump` ({} if it cannot)."""
    binary = py_spy()
    if binary is None:
        return {}
    dumped = subprocess.run([binary, "dump", "--pid", str(pid)], capture_output=True,
                            text=True, timeout=60, check=False)
    return {int(tid): name for tid, name in _DUMP_THREAD.findall(dumped.stdout)}


def thread_group(tid: int, pid: int, comm: str, python_names: Mapping[int, str]) -> str:
    name = python_names.get(tid)
    if name is None and tid == pid:
        return MAIN_THREAD
    if name is None:
        if comm.startswith(_RUST_NAMES):
            return TEMPORAL_CORE
        return NATIVE_POOL if python_names else UNNAMED
    if name == "MainThread":
        return MAIN_THREAD
    if name.startswith("temporal_workflow_"):
        return WORKFLOW_THREADS
    return EMBED_THREADS if name.startswith(_EXECUTOR_NAMES) else OTHER_PYTHON


def thread_spent(before: ThreadCpu, after: ThreadCpu) -> ThreadCpu:
    """CPU seconds each thread alive at the end spent since ``before``."""
    return {tid: (comm, seconds - before.get(tid, (comm, 0.0))[1])
            for tid, (comm, seconds) in after.items()}


def cpu_by_thread_group(pid: int, spent: ThreadCpu, process_seconds: float,
                        python_names: Mapping[int, str]) -> dict[str, float]:
    """CPU seconds per thread group; what the process spent beyond its live threads (threads
    that ended meanwhile) is its own group."""
    groups: dict[str, float] = {}
    for tid, (comm, seconds) in spent.items():
        group = thread_group(tid, pid, comm, python_names)
        groups[group] = groups.get(group, 0.0) + seconds
    ended = process_seconds - sum(groups.values())
    if ended > 0.005:
        groups[ENDED] = ended
    return groups


@dataclass(frozen=True)
class Sample:
    """One line of py-spy's raw output: a thread's stack (root first) seen ``count`` times."""

    tid: int
    thread: str | None
    frames: list[str]
    count: int


def parse_raw(raw: str) -> list[Sample]:
    samples = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        head, *frames = stack.split(";")
        thread = _RAW_THREAD.match(head)
        if thread and count.isdigit():
            samples.append(Sample(int(thread[1]), thread[2], frames, int(count)))
    return samples


def _location(frame: str) -> tuple[str, str]:
    """("function", "path") of a py-spy frame "function (path:line)"."""
    function, _, where = frame.rpartition(" (")
    return function, where.rpartition(":")[0]


def is_wait(frames: list[str]) -> bool:
    if not frames:
        return True
    function, path = _location(frames[-1])
    return (function, path.removeprefix(_STDLIB_DIR)) in WAITS


def package_of(path: str) -> str | None:
    """Top-level package of a frame's file (full path); None for the standard library and
    generated code."""
    for root in ("/site-packages/", "/dist-packages/", _CHECKOUT):
        if root in path:
            return path.split(root, 1)[1].split("/", 1)[0].removesuffix(".py")
    return None


def component_of(frames: list[str]) -> str:
    """The component a stack (root first) is charged to: its innermost frame outside the
    standard library, unless the event loop or a thread pool dispatched the work below it."""
    for frame in reversed(frames):
        function, path = _location(frame)
        package = package_of(path)
        if package is not None:
            return LIBRARIES.get(package, package)
        if function in DISPATCH:
            break
    return STDLIB


def names_in(samples: list[Sample]) -> dict[int, str]:
    return {s.tid: s.thread for s in samples if s.thread is not None}


def cpu_by_component(samples: list[Sample], pid: int, spent: ThreadCpu,
                     groups: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds per component: each Python thread group's CPU (from /proc) shared out
    by its samples; native groups whole."""
    names = names_in(samples)
    counted: dict[str, Counter[str]] = {}
    for sample in samples:
        if sample.thread is None or is_wait(sample.frames):
            continue
        group = thread_group(sample.tid, pid, spent.get(sample.tid, ("", 0.0))[0], names)
        counted.setdefault(group, Counter())[component_of(sample.frames)] += sample.count
    components: dict[str, float] = {}
    for group, seconds in groups.items():
        shares = counted.get(group) if group not in NATIVE_COMPONENTS else None
        if not shares:
            shares = Counter({NATIVE_COMPONENTS.get(group, group): 1})
        total = sum(shares.values())
        for component, count in shares.items():
            components[component] = components.get(component, 0.0) + seconds * count / total
    return components


@contextlib.contextmanager
def recording(pid: int, output: Path, rate: int = 100) -> Iterator[None]:
    """`py-spy record` of ``pid`` while the block runs (raw collapsed stacks, per thread)."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (it is in the dev dependencies)")
    log = output.with_name(output.name + ".log")
    with log.open("wb") as messages:
        process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--threads", "--full-filenames", "--output", str(output)],
            stdout=messages, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        process.wait(120)
    if not output.exists():
        raise RuntimeError(f"py-spy wrote no profile (exit {process.returncode}): "
                           f"{log.read_text(errors='replace')}")
