"""Embedding models side by side in one run (`team-memory eval locomo --model A --model B`).

For each model: a throwaway stack of its own (its database records that model), the LoCoMo
evaluation through the real import path (``locomo.evaluate``), the fusion weights
cross-validated over the conversations (cross_validation.py), then the model's CPU cost,
measured in this process once the stack is gone: CPU per text embedded one at a time and in
batches of 8 with the worker's session options (BATCH_TUNING), and CPU and wall time per search
query with the MCP server's (QUERY_TUNING), on LoCoMo turns and questions themselves. The search
latency is the whole ``search_memory`` of the evaluation.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mcp_server.search.retriever import Retriever
from team_memory.cross_validation import CrossValidated, cross_validate, describe
from team_memory.locomo import Conversation, Report, Stack, evaluate, throwaway_stack
from team_memory_core.embedder import (
    BATCH_TUNING,
    QUERY_TUNING,
    Embedder,
    LocalEmbedder,
    QueryEmbedder,
    SessionTuning,
    create_embedder,
    local_model,
)
from team_memory_core.settings import Settings

COST_TEXTS = 256
HYBRID, VECTOR = "hybrid (search_memory)", "vector only"
CROSS_VALIDATED = "hybrid, fusion weights cross-validated (held-out conversations)"


@dataclass(frozen=True)
class ModelCandidate:
    """A model to evaluate: its name (the database records it) and how to load it."""

    name: str
    open: Callable[[SessionTuning], Embedder]
    measure_cpu: bool = True  # False for an API: its CPU is not spent here


def configured_candidate(settings: Settings, name: str | None = None) -> ModelCandidate:
    """The configured model, or the local model ``name``."""
    if name is None:
        return ModelCandidate(settings.embedding_model,
                              lambda tuning: create_embedder(settings, tuning),
                              measure_cpu=settings.embedding_provider == "local")
    local_model(name)  # an unknown name fails here, before any stack starts
    cache = settings.data_dir / "models"
    return ModelCandidate(name, lambda tuning: LocalEmbedder(cache, name, tuning))


@dataclass(frozen=True)
class EmbeddingCost:
    batch1_ms: float  # CPU per text, the worker's options
    batch8_ms: float
    query_cpu_ms: float  # CPU per search query, the MCP server's options
    query_wall_ms: float  # its median wall time


@dataclass(frozen=True)
class ModelResult:
    name: str
    report: Report
    cross_validated: CrossValidated
    cost: EmbeddingCost | None


StackFor = Callable[[Settings], contextlib.AbstractAsyncContextManager[Stack]]
ProgressFor = Callable[[str, int], Callable[[str, int, int], None]]


async def compare(base: Settings, conversations: list[Conversation],
                  candidates: Sequence[ModelCandidate], *, concurrency: int = 8,
                  progress_for: ProgressFor | None = None,
                  stack_for: StackFor = throwaway_stack,
                  done: Callable[[ModelResult], None] | None = None) -> list[ModelResult]:
    """Each candidate in turn; ``done`` is told of each result as it comes."""
    results = []
    for candidate in candidates:
        embedder = candidate.open(QUERY_TUNING)
        settings = base.model_copy(update={"embedding_model": candidate.name,
                                           "embedding_dim": embedder.dim})
        turns = sum(len(c.turns) for c in conversations)
        async with stack_for(settings) as stack:
            report = await evaluate(
                stack, conversations, concurrency=concurrency, embedder=embedder,
                progress=progress_for(candidate.name, turns) if progress_for else None)
        checked = cross_validate(report.asked, Retriever(settings).weights(), datetime.now(UTC))
        _add_cross_validation(report, checked)
        cost = embedding_cost(candidate, conversations) if candidate.measure_cpu else None
        results.append(ModelResult(candidate.name, report, checked, cost))
        if done is not None:
            done(results[-1])
    return results


@contextlib.asynccontextmanager
async def existing_stack(stack: Stack) -> AsyncIterator[Stack]:
    yield stack


def _add_cross_validation(report: Report, checked: CrossValidated) -> None:
    report.methods[CROSS_VALIDATED] = checked.result
    report.notes.append(describe(checked.chosen))
    fused, searched = checked.at_defaults.recall(10), report.methods[HYBRID].recall(10)
    if abs(fused - searched) > 1e-9:
        report.notes.append(f"note: the kept candidates fused with the default weights give "
                            f"R@10 {fused:.3f}, search_memory gave {searched:.3f}")


def embedding_cost(candidate: ModelCandidate,
                   conversations: list[Conversation]) -> EmbeddingCost:
    turns = [t.content for c in conversations for t in c.turns]
    questions = [q.text for c in conversations for q in c.questions]
    texts = turns[::max(1, len(turns) // COST_TEXTS)][:COST_TEXTS]
    queries = questions[::max(1, len(questions) // COST_TEXTS)][:COST_TEXTS]
    worker = candidate.open(BATCH_TUNING)
    batch1, batch8 = (_cpu_per_text(worker.embed, texts, size) for size in (1, 8))
    server = candidate.open(QUERY_TUNING)
    embed_query = (server.embed_queries if isinstance(server, QueryEmbedder) else server.embed)
    query_cpu = _cpu_per_text(embed_query, queries, 1)
    walls = []
    for query in queries:
        started = time.perf_counter()
        embed_query([query])
        walls.append((time.perf_counter() - started) * 1000)
    return EmbeddingCost(batch1, batch8, query_cpu, statistics.median(walls))


def _cpu_per_text(embed: Callable[[list[str]], object], texts: list[str], batch: int) -> float:
    embed(texts[:batch])  # the first run allocates
    started = _cpu_seconds()
    for start in range(0, len(texts), batch):
        embed(texts[start:start + batch])
    return (_cpu_seconds() - started) * 1000 / len(texts)


def _cpu_seconds() -> float:
    """This process's CPU time, every thread (the caller's and onnxruntime's)."""
    return time.process_time()


def summary(results: Sequence[ModelResult]) -> str:
    """One line per model: both recall levels, hybrid and vector only, CPU and latency; then
    each model's hybrid and vector-only R@10 against the first model's, question by question."""
    return "\n".join([*_side_by_side(results), "", *_paired(results)])


def _paired(results: Sequence[ModelResult]) -> list[str]:
    """The mean difference of R@10 over the same questions, with 1.96 standard errors of that
    mean: a difference within it is noise of this question set."""
    if len(results) < 2:
        return []
    first = results[0]
    lines = [f"R@10 against {first.name}, paired over the same questions (mean difference "
             "+- 1.96 standard errors):", ""]
    for result in results[1:]:
        cells = []
        for method in (HYBRID, VECTOR, CROSS_VALIDATED):
            mean, margin = paired_difference(result.report.methods[method].recalls[10],
                                             first.report.methods[method].recalls[10])
            cells.append(f"{method}: {mean:+.3f} +- {margin:.3f}")
        lines.append(f"- {result.name}: " + "; ".join(cells))
    return lines


def paired_difference(values: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    differences = [a - b for a, b in zip(values, baseline, strict=True)]
    if len(differences) < 2:
        return (differences[0] if differences else 0.0), 0.0
    error = statistics.stdev(differences) / len(differences) ** 0.5
    return statistics.fmean(differences), 1.96 * error


def _side_by_side(results: Sequence[ModelResult]) -> list[str]:
    lines = [
        "| model | hybrid R@5 | R@10 | R@20 | R@10 cross-validated | session any R@5 "
        "| session all R@5 | vector only R@5 | R@10 | R@20 | vector session any R@5 "
        "| CPU/text batch 1 | batch 8 | CPU/query | search p50 | p95 |",
        "| --- |" + " --- |" * 15,
    ]
    for result in results:
        hybrid, vector = result.report.methods[HYBRID], result.report.methods[VECTOR]
        cells = [hybrid.recall(5), hybrid.recall(10), hybrid.recall(20),
                 result.cross_validated.result.recall(10),
                 statistics.fmean(hybrid.any_session[5]),
                 statistics.fmean(hybrid.all_sessions[5]),
                 vector.recall(5), vector.recall(10), vector.recall(20),
                 statistics.fmean(vector.any_session[5])]
        cost = result.cost
        costs = ([f"{cost.batch1_ms:.2f} ms", f"{cost.batch8_ms:.2f} ms",
                  f"{cost.query_cpu_ms:.2f} ms ({cost.query_wall_ms:.1f} wall)"]
                 if cost else ["-", "-", "-"])
        latency = [f"{hybrid.latency_ms(q) or 0:.1f} ms" for q in (0.5, 0.95)]
        lines.append(f"| {result.name} | " + " | ".join(
            [*(f"{value:.3f}" for value in cells), *costs, *latency]) + " |")
    return lines
