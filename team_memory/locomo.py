"""`team-memory eval locomo PATH`: evidence recall of search_memory on LoCoMo-format data.

Part of the program: it wires the service, a worker and the embedded stack together. Each
conversation is imported into its own project through the real import path
(MemoryService.save -> IngestMemory workflows), one memory per turn ("Speaker: text", plus the
shared image's caption), occurred_at = the session's date, source = the turn's dia_id. Every
question of categories 1-4 is then asked through MemoryService.search and scored at two
levels from the same ranking: turn level (the share of the question's evidence turns among the
top k memories: what this product returns) and session level, the figure the field reports
(sessions ranked by their best-ranked turn; "any" is 1 when one evidence session is among the
top k sessions, "all" when every one is). BM25-only and vector-only rankings of the same scope
are computed in the same run, and each question's hybrid candidates are kept for the
cross-validation of the fusion weights (cross_validation.py). ``evaluate`` takes any embedder:
model_comparison.py runs it once per model."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from mcp_server.app import open_service
from mcp_server.memories import MemoryService
from mcp_server.transfer import ImportItem, import_items
from mcp_server.validation import prepare_memory
from team_memory import embedded
from team_memory.embedded import Database
from team_memory_core.embedder import Embedder, embed_async
from team_memory_core.models.principal import Principal
from team_memory_core.settings import Settings
from team_memory_core.store.migrate import migrate
from team_memory_core.store.pool import create_pool, principal_tx
from team_memory_core.store.search import (
    Candidate,
    PendingVectors,
    SearchFilters,
    vector_candidates,
)
from team_memory_core.temporal import CORE_LOGGER
from team_memory_core.tenants import ensure_tenant
from workflows.worker import running_worker

KS = (5, 10, 20)
SESSION_KS = (5, 10)
CATEGORIES = (1, 2, 3, 4)
_DATE_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%Y-%m-%d %H:%M",
                 "%Y-%m-%d")
_SESSION = re.compile(r"^session_(\d+)$")


class BadDataset(ValueError):
    pass


@dataclass(frozen=True)
class Turn:
    dia_id: str
    content: str
    occurred_at: datetime


@dataclass(frozen=True)
class Question:
    text: str
    evidence: frozenset[str]


@dataclass(frozen=True)
class Conversation:
    sample_id: str
    turns: list[Turn]
    questions: list[Question]

    @property
    def project(self) -> str:
        return "locomo-" + re.sub(r"[^A-Za-z0-9._-]", "-", self.sample_id)[:150]


def parse_date(text: str) -> datetime:
    for fmt in _DATE_FORMATS:
        with contextlib.suppress(ValueError):
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
    raise BadDataset(f"unrecognised session date {text!r}")


def load(path: Path) -> list[Conversation]:
    try:
        samples = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BadDataset(f"cannot read {path}: {error}") from error
    if not isinstance(samples, list):
        raise BadDataset("a LoCoMo file is a JSON list of conversations")
    return [_conversation(sample) for sample in samples]


def _conversation(sample: dict[str, Any]) -> Conversation:
    try:
        dialogue = sample["conversation"]
        sessions = sorted(int(m.group(1)) for key in dialogue if (m := _SESSION.match(key)))
        turns = [
            _turn(turn, parse_date(dialogue[f"session_{n}_date_time"]))
            for n in sessions for turn in dialogue[f"session_{n}"]
        ]
        known = {t.dia_id for t in turns}
        questions = []
        for qa in sample.get("qa", []):
            evidence = frozenset(e for e in qa.get("evidence", []) if e in known)
            if qa.get("category") in CATEGORIES and evidence:
                questions.append(Question(str(qa["question"]), evidence))
        return Conversation(str(sample["sample_id"]), turns, questions)
    except (KeyError, TypeError, AttributeError) as error:
        raise BadDataset(f"not a LoCoMo conversation: missing {error}") from error


def _turn(turn: dict[str, Any], occurred_at: datetime) -> Turn:
    content = f"{turn['speaker']}: {turn['text']}"
    if turn.get("blip_caption"):
        content += f" [shared image: {turn['blip_caption']}]"
    return Turn(str(turn["dia_id"]), content, occurred_at)


# --- scoring --------------------------------------------------------------------------------


def session_of(dia_id: str) -> str:
    """A LoCoMo turn id is "D<session>:<turn>"."""
    return dia_id.split(":", 1)[0]


def ranked_sessions(found: list[set[str]]) -> list[str]:
    """Sessions in the order of their best-ranked turn."""
    return list(dict.fromkeys(session_of(turn) for turns in found for turn in sorted(turns)))


@dataclass
class MethodResult:
    recalls: dict[int, list[float]] = field(default_factory=lambda: {k: [] for k in KS})
    any_session: dict[int, list[float]] = field(
        default_factory=lambda: {k: [] for k in SESSION_KS})
    all_sessions: dict[int, list[float]] = field(
        default_factory=lambda: {k: [] for k in SESSION_KS})
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, found: list[set[str]], evidence: frozenset[str],
            latency_s: float | None) -> None:
        for k in KS:
            hit = set().union(*found[:k]) & evidence
            self.recalls[k].append(len(hit) / len(evidence))
        wanted, sessions = {session_of(e) for e in evidence}, ranked_sessions(found)
        for k in SESSION_KS:
            top = set(sessions[:k])
            self.any_session[k].append(float(bool(wanted & top)))
            self.all_sessions[k].append(float(wanted <= top))
        if latency_s is not None:
            self.latencies_ms.append(latency_s * 1000)

    def recall(self, k: int) -> float:
        return statistics.fmean(self.recalls[k])

    def latency_ms(self, quantile: float) -> float | None:
        """p50 (0.5) or p95 (0.95) of the timed runs; None when none was timed."""
        lat = sorted(self.latencies_ms)
        if not lat:
            return None
        return lat[min(len(lat) - 1, round(quantile * (len(lat) - 1)))]

    def row(self, name: str) -> str:
        cells = [self.recall(k) for k in KS]
        cells += [statistics.fmean(self.any_session[k]) for k in SESSION_KS]
        cells += [statistics.fmean(self.all_sessions[k]) for k in SESSION_KS]
        recall = " | ".join(f"{value:.3f}" for value in cells)
        latency = " | ".join("-" if (ms := self.latency_ms(q)) is None else f"{ms:.1f}"
                             for q in (0.5, 0.95))
        return f"| {name} | {recall} | {latency} |"


@dataclass(frozen=True)
class AskedQuestion:
    """A question, its evidence turns and the candidates search_memory fused for it (kept for
    the cross-validation of the fusion weights and for rerankers: bench/rerankers.py)."""

    conversation: str
    text: str
    evidence: frozenset[str]
    candidates: list[Candidate]
    turns: dict[UUID, set[str]]  # which turns each memory of the conversation stands for


@dataclass
class Report:
    conversations: int = 0
    memories: int = 0
    merged: int = 0
    questions: int = 0
    import_seconds: float = 0.0
    methods: dict[str, MethodResult] = field(default_factory=dict)
    asked: list[AskedQuestion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        lines = [
            "| method | R@5 | R@10 | R@20 | session any R@5 | any R@10 | session all R@5 "
            "| all R@10 | p50 ms | p95 ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *(result.row(name) for name, result in self.methods.items()),
        ]
        rate = self.memories / self.import_seconds if self.import_seconds else 0.0
        return "\n".join([
            f"{self.conversations} conversations, {self.memories} turns imported in "
            f"{self.import_seconds:.0f} s ({rate:.0f}/s; {self.merged} merged as identical or "
            f"duplicate), {self.questions} questions (categories 1-4)",
            "", "Turn level (R@k: evidence turns among the top k memories) and session level "
            "(sessions ranked by their best turn; any/all evidence sessions among the top k).",
            "", *lines, *(["", *self.notes] if self.notes else []),
        ])


# --- running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """Where an evaluation runs: a migrated database and the Temporal server of ``settings``."""

    settings: Settings
    database: Database


@contextlib.asynccontextmanager
async def throwaway_stack(base: Settings) -> AsyncIterator[Stack]:
    """A stack in a temp dir: embedded PostgreSQL and an in-memory Temporal dev server on a
    free port."""
    with tempfile.TemporaryDirectory(prefix="team-memory-eval-") as tmp:
        port = embedded.free_port()
        settings = base.model_copy(update={
            "data_dir": Path(tmp), "database_url": None, "database_admin_url": None,
            "temporal_address": f"127.0.0.1:{port}",
        })
        temporal = embedded.start_temporal(db_file=None, port=port, ui_port=None)
        try:
            with embedded.database(settings) as database:
                await migrate(database.admin_url, settings)
                yield Stack(settings, database)
        finally:
            embedded.stop_process(temporal)


async def evaluate(stack: Stack, conversations: list[Conversation], *, concurrency: int = 8,
                   progress: Callable[[str, int, int], None] | None = None,
                   embedder: Embedder | None = None) -> Report:
    """Import, ask, score, as a new tenant of ``stack``; a worker runs in this process on a
    task queue of its own. ``embedder``: the model to evaluate (default: the configured one;
    the database must have been made for it)."""
    _quiet_temporal_core()
    settings = stack.settings.model_copy(update={
        "database_url": stack.database.app_url, "database_admin_url": stack.database.admin_url,
        "task_queue": f"eval-{uuid.uuid4().hex[:10]}", "anthropic_api_key": None,
    })
    admin = await create_pool(stack.database.admin_url, min_size=1, max_size=2)
    try:
        tenant_name = f"eval-{uuid.uuid4().hex[:10]}"
        principal = Principal(tenant_id=await ensure_tenant(admin, tenant_name),
                              tenant_name=tenant_name)
    finally:
        await admin.close()
    report = Report(conversations=len(conversations))
    loaded: Future[Embedder] | None = None
    if embedder is not None:
        loaded = Future()
        loaded.set_result(embedder)
    async with open_service(settings, loaded) as service, running_worker(
        service.temporal, settings, service.pool, service.embedder, None
    ):
        sources: dict[str, dict[UUID, set[str]]] = {}
        started = time.perf_counter()
        for conversation in conversations:
            sources[conversation.project] = await _import(service, principal, conversation,
                                                          concurrency, progress, report)
        report.import_seconds = time.perf_counter() - started
        await _ask_all(service, principal, conversations, sources, report)
    return report


def _quiet_temporal_core() -> None:
    """The bulk import keeps the in-process worker saturated on purpose; its core's
    "workflow task took over 5 s" warnings would bury the table."""
    CORE_LOGGER.setLevel(logging.ERROR)


async def _import(service: MemoryService, principal: Principal, conversation: Conversation,
                  concurrency: int, progress: Callable[[str, int, int], None] | None,
                  report: Report) -> dict[UUID, set[str]]:
    items = [ImportItem(content=t.content, occurred_at=t.occurred_at, source=t.dia_id)
             for t in conversation.turns]
    imported = await import_items(service, principal, items, conversation.project,
                                  concurrency=concurrency, progress=progress)
    if imported.pending:
        raise RuntimeError(f"{imported.pending} memories were not committed in time")
    turns = await _turns_of_memories(service, principal, conversation)
    report.memories += len(items)
    report.merged += len(items) - len(turns)
    return turns


async def _turns_of_memories(service: MemoryService, principal: Principal,
                             conversation: Conversation) -> dict[UUID, set[str]]:
    """Which turns each live memory stands for: its own, those saved with identical text
    (same id) and those the ingestion folded into it as duplicates."""
    ids = [prepare_memory(service.settings, principal, turn.content,
                          project=conversation.project).memory_id
           for turn in conversation.turns]
    owner: dict[UUID, UUID] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 50):
        for memory in await service.get_many(principal, unique[start:start + 50],
                                             include_history=True):
            owner[memory.id] = memory.duplicate_of or memory.id
    turns: dict[UUID, set[str]] = {}
    for memory_id, turn in zip(ids, conversation.turns, strict=True):
        turns.setdefault(owner[memory_id], set()).add(turn.dia_id)
    return turns


async def _ask_all(service: MemoryService, principal: Principal,
                   conversations: list[Conversation],
                   sources: dict[str, dict[UUID, set[str]]], report: Report) -> None:
    methods = {"hybrid (search_memory)": MethodResult(), "BM25 only": MethodResult(),
               "vector only": MethodResult()}
    report.methods = methods
    warm = conversations[0]
    for question in warm.questions[:5]:  # load the model and fill the caches first
        await service.search(principal, question.text, limit=20, project=warm.project)
    for conversation in conversations:
        turns = sources[conversation.project]
        for question in conversation.questions:
            started = time.perf_counter()
            hits = await service.search(principal, question.text, limit=20,
                                        project=conversation.project)
            methods["hybrid (search_memory)"].add(
                [turns.get(h.id, set()) for h in hits], question.evidence,
                time.perf_counter() - started)
            for name, ranker in (("BM25 only", _bm25_only), ("vector only", _vector_only)):
                started = time.perf_counter()
                ids = await ranker(service, principal, question.text, conversation.project)
                methods[name].add([turns.get(i, set()) for i in ids], question.evidence,
                                  time.perf_counter() - started)
            report.asked.append(AskedQuestion(
                conversation.project, question.text, question.evidence,
                await _hybrid_candidates(service, principal, question.text,
                                         conversation.project), turns))
            report.questions += 1


def _scope(conversation_project: str) -> SearchFilters:
    return SearchFilters(projects=[conversation_project], statuses=["active"])


async def _hybrid_candidates(service: MemoryService, principal: Principal, query: str,
                             project: str) -> list[Candidate]:
    """The rows search_memory fuses for this question (its filters, ``limit=20``)."""
    vector = (await embed_async(service.embedder, [query], queries=True))[0]
    filters = service.filters(principal, project, None, None, None, None, False)
    async with principal_tx(service.pool, principal) as conn:
        return await service.retriever.candidates(conn, query, vector, filters,
                                                  PendingVectors(ids=[], vectors=[]),
                                                  limit=max(KS))


async def _vector_only(service: MemoryService, principal: Principal, query: str,
                       project: str) -> list[UUID]:
    vector = (await embed_async(service.embedder, [query], queries=True))[0]
    async with principal_tx(service.pool, principal) as conn:
        found: list[UUID] = await vector_candidates(conn, vector, _scope(project), max(KS),
                                                    exact=True)
    return found


async def _bm25_only(service: MemoryService, principal: Principal, query: str,
                     project: str) -> list[UUID]:
    """Okapi BM25 over every memory of the project sharing a word with the query."""
    vector = (await embed_async(service.embedder, [query], queries=True))[0]
    async with principal_tx(service.pool, principal) as conn:
        rows = await service.retriever.candidates(
            conn, query, vector, _scope(project), PendingVectors(ids=[], vectors=[]),
            keyword_only=True)
    ranked = sorted(rows, key=lambda r: -r.bm25)
    return [r.id for r in ranked[:max(KS)]]
