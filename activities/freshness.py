"""The nightly review of memories whose files changed since they were saved (a step of the
Consolidate workflow; docs/freshness.md).

Without a model (no key, the run's budget spent, or the model failing) the changed memories
are listed in the run's report for a person, and listed again the next night. With Claude
Haiku each is judged: KEEP anchors it to its files' new content (fresh again), REVISE holds a
revised text for review, ARCHIVE retires it (held for review when a newer memory of another
author suggested it: memory text is untrusted input for the model). Each judgment writes a
history event, and a judged memory is not judged again until its files change again.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from activities.failures import llm_failure
from team_memory_core.anchoring import refresh_freshness
from team_memory_core.contract import Policy
from team_memory_core.llm.client import Distiller, LLMError, LLMUsage
from team_memory_core.llm.freshness import (
    ChangedMemory,
    FileChange,
    Judgment,
    Verdict,
    review_changed,
)
from team_memory_core.models.anchors import Freshness
from team_memory_core.models.consolidation import ChangedReview, ChangedReviewRequest
from team_memory_core.models.memories import HistoryEvent
from team_memory_core.review import same_author
from team_memory_core.rules.redaction import redact
from team_memory_core.rules.text import approx_tokens
from team_memory_core.store import anchors
from team_memory_core.store.history import insert_event
from team_memory_core.store.memories import archive
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.proposals import Proposal, insert_proposal

REVIEW_MAX = 20  # changed memories judged per run (the oldest changes first)
NEWER_SHOWN = 3  # newer memories about the same files shown with each
_PROMPT_OVERHEAD_TOKENS = 1_500


@dataclass(frozen=True)
class UnderReview:
    memory: ChangedMemory
    author: UUID | None
    newer_authors: list[UUID | None]


async def review_changed_memories(pool: asyncpg.Pool, distiller: Distiller | None,
                                  request: ChangedReviewRequest) -> ChangedReview:
    async with tenant_tx(pool, request.tenant_id) as conn:
        found = await _under_review(conn, request.project)
    listed = ChangedReview(listed=[r.memory.id for r in found])
    shown = [r.memory for r in found]
    needed = _PROMPT_OVERHEAD_TOKENS + sum(approx_tokens(m.model_dump_json()) for m in shown)
    if not found or distiller is None or not request.allow_llm or needed > request.tokens_left:
        return listed
    try:
        review, usage = await review_changed(distiller, shown)
    except LLMError as error:
        raise llm_failure(error) from error
    outcome = listed.model_copy(update={
        "policy": Policy.HAIKU, "llm_calls": 1, "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens})
    async with tenant_tx(pool, request.tenant_id) as conn:
        judge = _Judge(conn, request, usage)
        by_id = {r.memory.id: r for r in found}
        for judgment in review.judgments:
            outcome = await judge(by_id[judgment.id], judgment, outcome)
    return outcome


async def _under_review(conn: asyncpg.Connection, project: str) -> list[UnderReview]:
    changed = await anchors.changed_memories(conn, project, REVIEW_MAX)
    files = await anchors.anchors_of(conn, [m.id for m in changed])
    found = []
    for memory in changed:
        newer = await anchors.newer_on_same_files(conn, memory.id, NEWER_SHOWN)
        moved = [FileChange(path=a.path, state=a.freshness.value, since=a.changed_at)
                 for a in files.get(memory.id, []) if a.freshness != Freshness.FRESH]
        found.append(UnderReview(
            ChangedMemory(id=memory.id, category=memory.category, content=memory.content,
                          files=moved, newer_on_same_files=[n.content for n in newer]),
            memory.author_id, [n.author_id for n in newer]))
    return found


@dataclass
class _Judge:
    """Applies one judgment in the review's transaction, with its history event (the call's
    tokens are recorded once, on the first event)."""

    conn: asyncpg.Connection
    request: ChangedReviewRequest
    usage: LLMUsage
    _billed: bool = False

    async def __call__(self, target: UnderReview, judgment: Judgment,
                       outcome: ChangedReview) -> ChangedReview:
        memory_id, reason = target.memory.id, redact(judgment.reason).text
        if not await anchors.lock_if_changed(self.conn, memory_id, target.memory.content):
            return outcome  # moved on meanwhile (fresh again, retired, rewritten): nothing to do
        await anchors.mark_reviewed(self.conn, [memory_id])
        if judgment.verdict == Verdict.KEEP:
            rebased = await anchors.rebase_on_reported(self.conn, memory_id)
            await refresh_freshness(self.conn, [memory_id])
            await self._event(HistoryEvent.ANCHOR_KEPT, memory_id,
                              f"still true after its files changed: {reason}",
                              {"rebased": rebased})
            return outcome.model_copy(update={"kept": outcome.kept + 1})
        if judgment.verdict == Verdict.ARCHIVE and same_author(
                [target.author, *target.newer_authors]):
            if await archive(self.conn, memory_id):
                await self._event(HistoryEvent.ARCHIVED, memory_id,
                                  f"its files changed: {reason}", {})
                return outcome.model_copy(update={"archived": outcome.archived + 1})
            return outcome
        return await self._propose(target, judgment, reason, outcome)

    async def _propose(self, target: UnderReview, judgment: Judgment, reason: str,
                       outcome: ChangedReview) -> ChangedReview:
        kind = "revise" if judgment.verdict == Verdict.REVISE else "archive"
        text = redact(judgment.revised_content or "").text or None
        proposal = Proposal(kind=kind, target_id=target.memory.id, source_ids=[target.memory.id],
                            proposed_text=text if kind == "revise" else None, reason=reason,
                            origin="consolidation", policy=Policy.HAIKU.value,
                            model=self.usage.model, run_id=self.request.run_id)
        held = await insert_proposal(self.conn, self.request.tenant_id, self.request.project,
                                     proposal)
        if held is None:
            return outcome  # the same proposal is pending already
        await self._event(HistoryEvent.proposed(kind), target.memory.id,
                          f"held for review (proposal {held}): {reason}",
                          {"proposal_id": held}, after_text=proposal.proposed_text)
        field = "revise_proposed" if kind == "revise" else "archive_proposed"
        return outcome.model_copy(update={field: getattr(outcome, field) + 1})

    async def _event(self, event: HistoryEvent, memory_id: UUID, reason: str,
                     detail: dict[str, object], after_text: str | None = None) -> None:
        billed = not self._billed
        self._billed = True
        await insert_event(
            self.conn, tenant_id=self.request.tenant_id, memory_id=memory_id, event=event,
            reason=reason, after_text=after_text, policy=Policy.HAIKU.value,
            model=self.usage.model,
            input_tokens=self.usage.input_tokens if billed else None,
            output_tokens=self.usage.output_tokens if billed else None,
            detail={"run_id": str(self.request.run_id), "consolidation": True, **detail})
