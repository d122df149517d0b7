"""Rerankers over the hybrid search's top N, judged on LoCoMo like the fusion weights are.

python -m bench.rerankers LOCOMO.json [--top 20 --top 30]

The configured model's `team-memory eval locomo` run on a throwaway stack keeps, for every
question, the rows search_memory fused (team_memory/locomo.py). Here they are fused again with
the default weights (search_memory's ranking), and each available reranker rescores the top N:

- *replace*: the top N in the reranker's order alone (the rest unchanged below them);
- *mix*: minmax(fused score) + lam x minmax(reranker score) within the top N, lam chosen per
  held-out conversation as the best mean turn-level R@10 on the other conversations (the
  leave-one-conversation-out rule of team_memory/cross_validation.py), scored on it only.

R@10 differences are paired over the same questions against the default ranking (+- 1.96
standard errors). CPU per query: the reranker's thread time for one question's query and its N
texts, nothing cached (a search would pay it on top of its own).

Rerankers: nanoranker (`uv pip install nanoranker onnxruntime-extensions`; no dependency of the
product), the only one found with its weights inside a registry package (notes in
docs/retrieval.md "Reranking"). A cross-encoder would plug in as another ``Reranker``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mcp_server.search.retriever import Retriever
from team_memory import locomo
from team_memory.locomo import KS, AskedQuestion, MethodResult
from team_memory.model_comparison import configured_candidate, paired_difference
from team_memory_core.embedder import QUERY_TUNING
from team_memory_core.rules.ranking import RankWeights, fuse
from team_memory_core.settings import Settings
from team_memory_core.store.search import Candidate

MIX_WEIGHTS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
SELECTION_K = 10


class Reranker(Protocol):
    name: str

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One score per text, higher is more relevant to the query."""
        ...


@dataclass(frozen=True)
class RerankStudy:
    reranker: str
    top: int
    default: MethodResult  # the default weights' ranking (= search_memory)
    replaced: MethodResult
    mixed: MethodResult  # held-out rankings only, in question order
    chosen: dict[str, float]  # lam per held-out conversation
    cpu_ms: list[float]  # per question

    def row(self) -> str:
        difference, margin = paired_difference(self.mixed.recalls[10],
                                               self.default.recalls[10])
        replaced, _ = paired_difference(self.replaced.recalls[10], self.default.recalls[10])
        cpu = sorted(self.cpu_ms)
        return (f"| {self.reranker} | {self.top} | {_recalls(self.default)} | "
                f"{_recalls(self.replaced)} ({replaced:+.3f}) | {_recalls(self.mixed)} | "
                f"{difference:+.3f} +- {margin:.3f} | "
                f"{', '.join(f'{lam:g}' for lam in self.chosen.values())} | "
                f"{_quantile(cpu, 0.5):.1f} ms | {_quantile(cpu, 0.95):.1f} ms |")


HEADER = ("| reranker | top N | default R@5 / 10 / 20 | replace R@5 / 10 / 20 (R@10 diff) "
          "| mix cross-validated R@5 / 10 / 20 | mix R@10 diff (paired) | lam chosen "
          "| CPU/query p50 | p95 |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def study(asked: Sequence[AskedQuestion], reranker: Reranker, top: int,
          weights: RankWeights, now: datetime) -> RerankStudy:
    default, replaced = MethodResult(), MethodResult()
    mixes: list[dict[float, list[set[str]]]] = []
    cpu_ms = []
    for question in asked:
        ranked = fuse(question.candidates, weights, now)
        head = [row for row, _ in ranked[:top]]
        tail = [row for row, _ in ranked[top:max(KS)]]
        started = time.thread_time()
        scores = np.asarray(reranker.score(question.text, [row.content for row in head]),
                            dtype=np.float64)
        cpu_ms.append((time.thread_time() - started) * 1000)
        fused = _minmax(np.array([score.total for _, score in ranked[:top]]))
        default.add(_found(question, head, tail, range(len(head))), question.evidence, None)
        replaced.add(_found(question, head, tail, _descending(scores)), question.evidence, None)
        mixes.append({lam: _found(question, head, tail,
                                  _descending(fused + lam * _minmax(scores)))
                      for lam in MIX_WEIGHTS})
    chosen = _choose(asked, mixes)
    mixed = MethodResult()
    for question, per_lam in zip(asked, mixes, strict=True):
        mixed.add(per_lam[chosen[question.conversation]], question.evidence, None)
    return RerankStudy(reranker.name, top, default, replaced, mixed, chosen, cpu_ms)


def _found(question: AskedQuestion, head: Sequence[Candidate], tail: Sequence[Candidate],
           order: Sequence[int]) -> list[set[str]]:
    """The turns of each ranked memory: the head in ``order``, then the tail."""
    return [question.turns.get(row.id, set()) for row in [*(head[i] for i in order), *tail]]


def _choose(asked: Sequence[AskedQuestion],
            mixes: Sequence[dict[float, list[set[str]]]]) -> dict[str, float]:
    """For each conversation, the lam with the best mean R@10 on the other conversations."""
    chosen = {}
    for held_out in dict.fromkeys(q.conversation for q in asked):
        training = [(q, per_lam) for q, per_lam in zip(asked, mixes, strict=True)
                    if q.conversation != held_out]
        chosen[held_out] = max(MIX_WEIGHTS, key=lambda lam: statistics.fmean(
            _recall(per_lam[lam], q.evidence) for q, per_lam in training) if training else 0.0)
    return chosen


def _recall(found: list[set[str]], evidence: frozenset[str]) -> float:
    return len(set().union(*found[:SELECTION_K]) & evidence) / len(evidence)


def _descending(scores: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")]


def _minmax(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if len(values) else 0.0
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _recalls(result: MethodResult) -> str:
    return " / ".join(f"{result.recall(k):.3f}" for k in KS)


def _quantile(values: Sequence[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else 0.0


class NanoRanker:
    """nanoranker 1.2 (MIT): universal-sentence-encoder-multilingual plus a 64-bucket
    character n-gram hash for the query and for each text, scored by a small feed-forward
    net over the pair (no attention between query and text: not a cross-encoder). Its ONNX
    sessions run on one thread on this machine (it takes a quarter of the cores)."""

    name = "nanoranker 1.2"

    def __init__(self) -> None:
        import nanoranker

        self._model: Any = nanoranker

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        question = self._model.embed(query)
        passages = np.array([self._model.embed(text) for text in texts])
        pairs = np.concatenate([np.tile(question, (len(passages), 1)), passages],
                               axis=1).astype(np.float32)
        scores: np.ndarray = self._model.reranker_model.run(
            ["output"], {"input": pairs})[0].reshape(-1)
        return scores


def available() -> list[Reranker]:
    return [NanoRanker()] if importlib.util.find_spec("nanoranker") is not None else []


async def _asked(settings: Settings, path: Path) -> tuple[locomo.Report, Settings]:
    candidate = configured_candidate(settings)
    embedder = candidate.open(QUERY_TUNING)
    settings = settings.model_copy(update={"embedding_model": candidate.name,
                                           "embedding_dim": embedder.dim})
    async with locomo.throwaway_stack(settings) as stack:
        report = await locomo.evaluate(stack, locomo.load(path), embedder=embedder)
    return report, settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rerankers", description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, action="append",
                        help="candidates rescored per question (repeatable; default 20 and 30)")
    args = parser.parse_args()
    rerankers = available()
    if not rerankers:
        parser.error("no reranker installed (uv pip install nanoranker onnxruntime-extensions)")
    report, settings = asyncio.run(_asked(Settings(), args.path))
    print(f"## {settings.embedding_model}: search_memory\n\n{report.table()}\n")
    weights, now = Retriever(settings).weights(), datetime.now(UTC)
    print(HEADER)
    for reranker in rerankers:
        for top in args.top or [20, 30]:
            print(study(report.asked, reranker, top, weights, now).row(), flush=True)


if __name__ == "__main__":
    main()
