"""The pure parts of consolidation: grouping neighbours, the local fold, the manifesto text;
and the one manifesto write that purge shares with the nightly run.

The decay rule (docs/consolidation.md): a memory's weight is
``importance x 0.5 ^ (age_days / TEAM_MEMORY_ARCHIVE_HALF_LIFE_DAYS)``; an active memory of
importance up to TEAM_MEMORY_ARCHIVE_MAX_IMPORTANCE is archived once its weight falls below
TEAM_MEMORY_ARCHIVE_THRESHOLD (the SQL lives in store.consolidation.archive_stale).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import numpy as np

from team_memory_core.models.consolidation import (
    MANIFESTO_RULE_MAX_CHARS,
    ConsolidationPage,
    ManifestoRule,
)
from team_memory_core.models.decisions import DecisionKind
from team_memory_core.rules import text as text_rules
from team_memory_core.rules.dedupe import local_decision
from team_memory_core.rules.text import one_line
from team_memory_core.settings import Settings
from team_memory_core.store import consolidation as store
from team_memory_core.store.consolidation import ClusterMember, Neighbourhood, WeightedMemory
from team_memory_core.store.ingestion import Neighbour

# How many of a project's memories (by importance x recency) a manifesto is written from.
MANIFESTO_CANDIDATES = 40
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def neighbourhood_page(rows: Sequence[Neighbourhood], page_size: int) -> ConsolidationPage:
    """Each seed with its neighbours is one group to review, unless all of them were
    reviewed since they last changed. A seed without neighbours is reviewed alone only when
    it is flagged (kept without a model decision), so the flag gets cleared."""
    groups: dict[UUID, list[UUID]] = {}
    pending: dict[UUID, bool] = {}
    for row in rows:
        seed = row.seed
        members = groups.setdefault(seed, [seed])
        pending.setdefault(seed, not row.reviewed)
        if row.neighbour is not None:
            members.append(row.neighbour)
            pending[seed] = pending[seed] or not row.neighbour_reviewed
    clusters = [members for seed, members in groups.items()
                if pending[seed] and (len(members) > 1 or _flagged(rows, seed))]
    seeds = list(groups)
    cursor = seeds[-1] if len(seeds) >= page_size else None
    return ConsolidationPage(clusters=clusters, next_cursor=cursor)


def _flagged(rows: Sequence[Neighbourhood], seed: UUID) -> bool:
    return any(row.seed == seed and row.needs_review for row in rows)


@dataclass(frozen=True)
class Fold:
    duplicate: UUID
    keep: UUID
    reason: str


def local_folds(members: Sequence[ClusterMember], threshold: float) -> list[Fold]:
    """Exact and near duplicates within a cluster (oldest first): the older memory stays,
    as on ingest. The local policy never merges differing text, so nothing else changes."""
    kept: list[ClusterMember] = []
    folds = []
    for member in members:
        neighbours = [
            Neighbour(k.id, k.content, k.category, k.content_hash,
                      _cosine(member.embedding, k.embedding))
            for k in kept
        ]
        decision = local_decision(member.content, member.content_hash, neighbours, threshold)
        if decision.kind is DecisionKind.DUPLICATE and decision.target_id is not None:
            folds.append(Fold(member.id, decision.target_id, decision.reason))
        else:
            kept.append(member)
    return folds


def _cosine(a: object, b: object) -> float:
    """Stored embeddings are unit vectors (pgvector's Vector or a numpy array)."""
    return float(np.dot(_array(a), _array(b)))


def _array(vector: object) -> np.ndarray:
    to_numpy = getattr(vector, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy is not None else vector, dtype=np.float32)


# --- the manifesto ----------------------------------------------------------------------------


def fingerprint(top: Sequence[WeightedMemory], *settings: object) -> str:
    """Digest of the manifesto's inputs, order-insensitive: unchanged inputs, no rewrite."""
    items = sorted((str(r.id), r.content, int(r.importance)) for r in top)
    return hashlib.sha256(json.dumps([items, [str(s) for s in settings]]).encode()).hexdigest()


def rule_text(content: str) -> str:
    """A memory shortened to one rule line: its first sentence, at most
    MANIFESTO_RULE_MAX_CHARS."""
    first = _SENTENCE_END.split(one_line(content), maxsplit=1)[0]
    return one_line(first, MANIFESTO_RULE_MAX_CHARS)


def local_manifesto(
    top: Sequence[WeightedMemory], max_rules: int, token_budget: int
) -> list[ManifestoRule]:
    """Without a model: the top memories by importance x recency, one rule each."""
    rules = [ManifestoRule(text=rule_text(r.content), source_ids=[r.id]) for r in top]
    return within_budget(rules, max_rules, token_budget)


def within_budget(
    rules: Sequence[ManifestoRule], max_rules: int, token_budget: int
) -> list[ManifestoRule]:
    """The ranked rules that fit (the one budget rule: rules/text.py), at most ``max_rules``."""
    return text_rules.within_budget(rules[:max_rules], _rule_line, token_budget)[:max_rules]


def _rule_line(rule: ManifestoRule) -> str:
    return f"99. {rule.text}\n"  # a rule as render_manifesto numbers it, at its widest


def render_manifesto(rules: Sequence[ManifestoRule]) -> str:
    return "\n".join(f"{n}. {rule.text}" for n, rule in enumerate(rules, start=1))


def manifesto_fingerprint(top: Sequence[WeightedMemory], policy: str, settings: Settings) -> str:
    return fingerprint(top, policy, settings.manifesto_max_rules,
                       settings.manifesto_token_budget)


async def write_local_manifesto(
    conn: asyncpg.Connection, tenant_id: UUID, project: str, settings: Settings
) -> int:
    """Rewrite a project's manifesto from its current memories without a model, in the
    caller's transaction; returns the number of rules. A purge calls it so that the purged
    text leaves the manifesto in the same transaction as it leaves the memory (the next
    nightly run with the model rewrites it again: the fingerprint names the policy)."""
    top = await store.top_memories(conn, project, settings.archive_half_life_days,
                                   MANIFESTO_CANDIDATES)
    rules = local_manifesto(top, settings.manifesto_max_rules, settings.manifesto_token_budget)
    await store.upsert_manifesto(
        conn, tenant_id=tenant_id, project=project, rules=rules,
        fingerprint=manifesto_fingerprint(top, "local", settings), policy="local",
        model=None, input_tokens=None, output_tokens=None,
    )
    return len(rules)
