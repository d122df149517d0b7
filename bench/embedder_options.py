"""CPU per embedded text under onnxruntime session options and local models, by batch size.

python -m bench.embedder_options [--texts N]

Each variant builds a local model's session with its options and embeds the bench corpus
(bench/corpus.py) in batches of 1, 4, 8 and 32; CPU is this process's user + system time
(every thread: the caller and onnxruntime's pools), wall time beside it. CPU per text is what
the worker pays; it does not depend much on what else runs on the machine, wall time does.
The last column is what a search waits for: one short question at a time, median wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.corpus import memory_text, question
from team_memory_core.embedder import (
    BATCH_TUNING,
    BUNDLED_MODEL,
    INT8_COMPUTE_MODEL,
    QUERY_TUNING,
    LocalEmbedder,
    SessionTuning,
)

BATCHES = (1, 4, 8, 32)
VARIANTS: dict[str, tuple[str, SessionTuning]] = {
    "onnxruntime defaults (threads = cores, spinning)": (BUNDLED_MODEL, SessionTuning(
        intra_op_threads=0, spinning=True)),
    "2 threads, no spinning (the MCP server's)": (BUNDLED_MODEL, QUERY_TUNING),
    "1 thread, no spinning (the worker's)": (BUNDLED_MODEL, BATCH_TUNING),
    "1 thread, no spinning, basic graph optimisations": (BUNDLED_MODEL, SessionTuning(
        graph_optimization="basic")),
    "1 thread, no spinning, extended graph optimisations": (BUNDLED_MODEL, SessionTuning(
        graph_optimization="extended")),
    "int8 arithmetic (all-MiniLM-L6-v2-dynamic-int8), 2 threads": (
        INT8_COMPUTE_MODEL, SessionTuning(intra_op_threads=2)),
    "int8 arithmetic, 1 thread (the worker's; the MCP server's since issue 16's search)": (
        INT8_COMPUTE_MODEL, QUERY_TUNING),
}


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def measure(embed: Callable[[list[str]], object], texts: list[str], batch: int) -> str:
    embed(texts[:batch])  # warm-up: the first run allocates
    cpu, wall = cpu_seconds(), time.perf_counter()
    for start in range(0, len(texts), batch):
        embed(texts[start:start + batch])
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    return f"{cpu * 1000 / len(texts):.1f} ms CPU ({wall * 1000 / len(texts):.1f} ms wall)"


def query_wall(embed: Callable[[list[str]], object], questions: list[str]) -> str:
    embed(questions[:1])
    walls = []
    for text in questions:
        started = time.perf_counter()
        embed([text])
        walls.append(time.perf_counter() - started)
    return f"{statistics.median(walls) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.embedder_options", description=__doc__)
    parser.add_argument("--texts", type=int, default=256)
    args = parser.parse_args()
    texts = [memory_text(i) for i in range(args.texts)]
    questions = [question(i) for i in range(args.texts)]
    cache = Path(tempfile.gettempdir()) / "team-memory-bench-models"
    print("| session options | " + " | ".join(f"batch {b}" for b in BATCHES)
          + " | one question, wall p50 |")
    print("| --- |" + " --- |" * (len(BATCHES) + 1))
    for label, (model, tuning) in VARIANTS.items():
        embedder = LocalEmbedder(cache, model, tuning)
        cells = [measure(embedder.embed, texts, batch) for batch in BATCHES]
        cells.append(query_wall(embedder.embed, questions))
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
