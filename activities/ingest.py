"""Activities of the ingestion workflow: embed, decide, commit, or all three in one step when
the rules decide without the model. Each is idempotent.

The commit also records whether the memory's text is aimed at AI agents: the local rules'
flags, plus Claude Haiku's verdict when the model was asked (the dedupe decision carries it, a
project's first memory is screened alone). A flagged memory changes no other memory."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
import numpy as np
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.embedding import EmbeddingActivities
from activities.failures import llm_failure
from team_memory_core import telemetry
from team_memory_core.contract import (
    COMMIT_ACTIVITY,
    DECIDE_ACTIVITY,
    EMBED_ACTIVITY,
    INGEST_ACTIVITY,
    Policy,
)
from team_memory_core.llm.client import LLMError
from team_memory_core.llm.ingest import Candidate, decide_ingest
from team_memory_core.llm.screen import screen_memory
from team_memory_core.models.decisions import Decision, DecisionKind, IngestResult, Screening
from team_memory_core.models.memories import HistoryEvent, IngestInput, MemoryStatus
from team_memory_core.review import PROPOSAL_KIND, hold_foreign_change, quarantine
from team_memory_core.rules import injection
from team_memory_core.rules.dedupe import exact_duplicate, local_decision
from team_memory_core.rules.redaction import redact
from team_memory_core.store import consolidation, history, ingestion, memories, proposals
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.ingestion import AddedEvent, Neighbour
from team_memory_core.store.pool import tenant_tx


class MemoryRowMissing(ApplicationError):
    """The memory's row is not there (yet): retried, as any storage step."""

    def __init__(self) -> None:
        super().__init__("memory row missing", non_retryable=False)


class IngestActivities(EmbeddingActivities):
    @activity.defn(name=EMBED_ACTIVITY)
    async def embed_memory(self, item: IngestInput) -> None:
        """Embed the text and store the vector on the row (it never enters workflow history)."""
        used = self.model.current
        vector = await self.embedder.embed_one(item.content)
        async with tenant_tx(self.pool, item.tenant_id) as conn:
            await self.model.confirm(conn, used)
            await memories.upsert_embedding(conn, item, vector,
                                            injection.flags_of(item.content))

    @activity.defn(name=INGEST_ACTIVITY)
    async def ingest_memory(self, item: IngestInput) -> IngestResult | None:
        """Embed, decide and commit in one transaction when the rules decide alone (no model,
        no live neighbour, or the same text is live). None when the model must decide: the
        vector is stored and the workflow goes on with decide_memory and commit_memory.

        The vector is written with the status (one new row version, not two)."""
        used = self.model.current
        vector = await self.embedder.embed_one(item.content)
        async with tenant_tx(self.pool, item.tenant_id) as conn:
            models, neighbours = await ingestion.similar_current_of_model(
                conn, vector, item.memory_id, item.project, self.settings.dedupe_candidates,
                item.private_to)
            await self.model.check(used, models)
            decision = self._decided_by_rules(item, neighbours)
            if decision is None:
                await memories.upsert_embedding(conn, item, vector,
                                                injection.flags_of(item.content))
                return None
            try:
                return await self._commit(conn, item, decision, vector)
            except MemoryRowMissing:
                # The save's pending row never landed: the workflow's input makes it.
                await memories.upsert_embedding(conn, item, vector,
                                                injection.flags_of(item.content))
                return await self._commit(conn, item, decision)

    @activity.defn(name=DECIDE_ACTIVITY)
    async def decide_memory(self, item: IngestInput) -> Decision:
        async with tenant_tx(self.pool, item.tenant_id) as conn:
            stored = await memories.stored_vector(conn, item.memory_id)
            if stored is None:
                raise MemoryRowMissing
            neighbours = [] if stored.embedding is None else await ingestion.similar_current(
                conn, stored.embedding, item.memory_id, item.project,
                self.settings.dedupe_candidates, item.private_to)
        decision = self._decided_by_rules(item, neighbours)
        return decision if decision is not None else await self._ask_model(item, neighbours)

    def _decided_by_rules(self, item: IngestInput, neighbours: list[Neighbour]) -> Decision | None:
        """The local policy's decision, or None when the model must be asked: to decide
        against live neighbours, or to screen a project's first memory (which the rules have
        not flagged already)."""
        same = exact_duplicate(item.content_hash, neighbours)
        if self.distiller is not None and same is None and (
                neighbours or not injection.flags_of(item.content)):
            return None
        return local_decision(item.content, item.content_hash, neighbours,
                              self.settings.duplicate_similarity)

    async def _ask_model(self, item: IngestInput, neighbours: list[Neighbour]) -> Decision:
        assert self.distiller is not None
        candidates = [
            Candidate(id=n.id, content=n.content, category=n.category, similarity=n.similarity)
            for n in neighbours
        ]
        try:
            if not candidates:
                return await self._screen_alone(item)
            answer, usage = await decide_ingest(
                self.distiller, item.content, item.category.value, candidates
            )
        except LLMError as error:
            raise llm_failure(error) from error
        # The model's text is redacted before it enters the workflow history or a table.
        merged = None if answer.merged_content is None else redact(answer.merged_content).text
        decision = Decision(
            kind=answer.action, target_id=answer.target_id,
            merged_content=merged, reason=redact(answer.reason).text, policy=Policy.HAIKU,
            model=usage.model, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            screening=None if answer.screening is None else _redacted(
                answer.screening.screening()),
        )
        target_author = next((n.author for n in neighbours if n.id == answer.target_id), None)
        # An input recorded before members names its key, which became the member of that id.
        return hold_foreign_change(decision, target_author, item.author_id or item.key_id)

    async def _screen_alone(self, item: IngestInput) -> Decision:
        """A project's first memory: nothing to compare, only the screening to ask for."""
        assert self.distiller is not None
        verdict, usage = await screen_memory(self.distiller, item.content, item.category.value)
        return Decision(kind=DecisionKind.ADD, reason="No similar memory.", policy=Policy.HAIKU,
                        model=usage.model, input_tokens=usage.input_tokens,
                        output_tokens=usage.output_tokens, screening=_redacted(verdict))

    @activity.defn(name=COMMIT_ACTIVITY)
    async def commit_memory(self, item: IngestInput, decision: Decision) -> IngestResult:
        """Apply the decision in one transaction, with its history events."""
        async with tenant_tx(self.pool, item.tenant_id) as conn:
            return await self._commit(conn, item, decision)

    async def _commit(
        self, conn: asyncpg.Connection, item: IngestInput, decision: Decision,
        embedding: np.ndarray | None = None,
    ) -> IngestResult:
        """``embedding``: the memory's vector when it is not stored yet."""
        found = injection.findings(item.content)
        if _adds_alone(item, decision, found):
            added = await ingestion.activate_added(
                conn, tenant_id=item.tenant_id, memory_id=item.memory_id, project=item.project,
                embedding=embedding, event=_added_event(item, decision))
            if added.activated:
                return _committed(item, decision, MemoryStatus.ACTIVE, added.schedule_needed)
        # Locked: a forget committed meanwhile must not be undone by activating the row.
        state = await memories.fetch_status(conn, item.memory_id, for_update=True)
        if state is None:
            raise MemoryRowMissing
        if state.status != MemoryStatus.PENDING:
            return IngestResult(memory_id=item.memory_id, decision=decision.kind,
                                target_id=decision.target_id, status=state.status)
        status = await self._apply(conn, item, decision, embedding, found)
        schedule_needed = await consolidation.register_project(conn, item.tenant_id,
                                                               item.project)
        return _committed(item, decision, status, schedule_needed)

    async def _apply(
        self, conn: asyncpg.Connection, item: IngestInput, decision: Decision,
        embedding: np.ndarray | None, found: list[injection.Finding],
    ) -> MemoryStatus:
        flagged = bool(found) or _aimed_at_agents(decision.screening)
        if flagged:
            decision = quarantine(decision)
        record = _EventRecorder(conn, item, decision)
        if item.redactions:
            await record(HistoryEvent.REDACTED, reason="secrets removed before storage: "
                         + ", ".join(item.redactions))
        target = decision.target_id
        if decision.kind is DecisionKind.DUPLICATE and target is not None:
            await memories.mark_duplicate(conn, item.memory_id, target, embedding=embedding)
            await record(HistoryEvent.DUPLICATE, related_id=target, after_text=item.content)
            return MemoryStatus.DUPLICATE
        if decision.kind is DecisionKind.UPDATE and target is not None:
            merged = decision.merged_content or item.content
            used = self.model.current
            vector = await self.embedder.embed_one(merged)
            await self.model.confirm(conn, used)
            before = await memories.update_content(conn, target, merged, item.memory_id, vector)
            await memories.mark_duplicate(conn, item.memory_id, target, embedding=embedding)
            await record(HistoryEvent.MERGED, memory_id=target, before_text=before,
                         after_text=merged, related_id=item.memory_id)
            await record(HistoryEvent.MERGED_INTO, related_id=target, after_text=item.content)
            await record.audit("merge", target)
            # The model wrote the merged text: it is screened like any new text.
            await record.flag(target, injection.findings(merged), None)
            return MemoryStatus.DUPLICATE
        await memories.activate(conn, item.memory_id, embedding)
        if decision.needs_review:
            await memories.mark_needs_review(conn, item.memory_id)
        await record(HistoryEvent.KEPT_WITHOUT_DECISION if decision.needs_review
                     else HistoryEvent.ADDED,
                     after_text=item.content, reason=_held_note(decision))
        if flagged:
            await record.flag(item.memory_id, found, decision.screening)
        if decision.kind is DecisionKind.SUPERSEDE and target is not None:
            await memories.supersede(conn, target, item.memory_id)
            await record(HistoryEvent.SUPERSEDED, memory_id=target, related_id=item.memory_id)
            await record.audit("supersede", target)
        if decision.held is not None and target is not None:
            await self._hold(conn, item, decision, target, record)
        return MemoryStatus.ACTIVE

    async def _hold(self, conn: asyncpg.Connection, item: IngestInput, decision: Decision,
                    target: UUID, record: _EventRecorder) -> None:
        """Record the model's change to another author's memory for review, unapplied."""
        assert decision.held is not None
        kind = PROPOSAL_KIND[decision.held]
        proposal = proposals.Proposal(
            kind=kind, target_id=target, source_ids=[item.memory_id],
            proposed_text=decision.merged_content, reason=decision.reason, origin="ingest",
            policy=decision.policy, model=decision.model, key_id=item.key_id)
        held = await proposals.insert_proposal(conn, item.tenant_id, item.project, proposal)
        if held is None:
            return
        await record(HistoryEvent.proposed(kind), memory_id=target, related_id=item.memory_id,
                     reason=f"held for review (proposal {held}), not applied: the memory has "
                     f"another author. {decision.reason}".strip())
        await record.audit(f"{kind}.proposed", target, proposal_id=held)


def _adds_alone(item: IngestInput, decision: Decision, found: list[injection.Finding]) -> bool:
    """Whether committing the decision only activates the memory with its one history event
    (``store.ingestion.activate_added``): no redaction, flag, review, supersession or
    held proposal to record with it."""
    return (decision.kind is DecisionKind.ADD and not decision.needs_review
            and decision.held is None and not item.redactions and not found
            and not _aimed_at_agents(decision.screening))


def _added_event(item: IngestInput, decision: Decision) -> AddedEvent:
    return AddedEvent(event=HistoryEvent.ADDED, reason=decision.reason, after_text=item.content,
                      policy=decision.policy, model=decision.model,
                      input_tokens=decision.input_tokens or None,
                      output_tokens=decision.output_tokens or None)


def _committed(item: IngestInput, decision: Decision, status: MemoryStatus,
               schedule_needed: bool) -> IngestResult:
    telemetry.decisions.add(1, {"decision": decision.kind.value, "policy": decision.policy})
    return IngestResult(memory_id=item.memory_id, decision=decision.kind,
                        target_id=decision.target_id, status=status,
                        schedule_needed=schedule_needed)


def _aimed_at_agents(screening: Screening | None) -> bool:
    return screening is not None and screening.aimed_at_agents


def _redacted(screening: Screening) -> Screening:
    return screening.model_copy(update={"reason": redact(screening.reason).text})


def _held_note(decision: Decision) -> str | None:
    if decision.held is None:
        return None
    verb = "merge it into" if decision.held is DecisionKind.UPDATE else "let it supersede"
    return (f"kept as its own memory: the model proposed to {verb} {decision.target_id}, a "
            "memory of another author; the proposal is held for review")


@dataclass(frozen=True)
class _EventRecorder:
    """Writes history events carrying the decision's reason, policy, model and tokens."""

    conn: asyncpg.Connection
    item: IngestInput
    decision: Decision

    async def __call__(
        self, event: HistoryEvent, *, memory_id: UUID | None = None, reason: str | None = None,
        before_text: str | None = None, after_text: str | None = None,
        related_id: UUID | None = None,
    ) -> None:
        await history.insert_event(
            self.conn, tenant_id=self.item.tenant_id, memory_id=memory_id or self.item.memory_id,
            event=event, reason=reason or self.decision.reason, before_text=before_text,
            after_text=after_text, related_id=related_id, policy=self.decision.policy,
            model=self.decision.model, input_tokens=self.decision.input_tokens or None,
            output_tokens=self.decision.output_tokens or None,
        )

    async def flag(self, memory_id: UUID, found: list[injection.Finding],
                   screening: Screening | None) -> None:
        """Flag the memory as aimed at AI agents (when the rules or the model say so), with
        its history event and audit row."""
        flags = [f.rule for f in found] + ([injection.MODEL_FLAG]
                                           if _aimed_at_agents(screening) else [])
        if not flags:
            return
        await memories.add_injection_flags(self.conn, memory_id, flags)
        await self(HistoryEvent.FLAGGED, memory_id=memory_id,
                   reason=injection.flag_note(found, screening))
        await self.audit("flag", memory_id, flags=flags)

    async def audit(self, action: str, target: UUID, **detail: object) -> None:
        """An audit entry for a decision that changed (or proposed to change) another memory,
        on behalf of the key that saved the new one."""
        await insert_audit(
            self.conn, tenant_id=self.item.tenant_id, key_id=self.item.key_id,
            actor=f"policy:{self.decision.policy}", action=action, target=str(target),
            outcome="ok", detail={"memory_id": str(self.item.memory_id),
                                  "model": self.decision.model, **detail},
        )
