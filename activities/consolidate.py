"""Activities of the nightly consolidation (workflows/consolidate.py). Each is idempotent: a
retried or repeated step finds its work done (reviewed marks, statuses) and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.embedding import EmbeddingActivities
from activities.failures import llm_failure
from activities.freshness import review_changed_memories
from team_memory_core import schedules
from team_memory_core.contract import (
    ARCHIVE_ACTIVITY,
    ENSURE_SCHEDULE_ACTIVITY,
    FIND_CLUSTERS_ACTIVITY,
    FINISH_CONSOLIDATION_ACTIVITY,
    MANIFESTO_ACTIVITY,
    REVIEW_CHANGED_ACTIVITY,
    REVIEW_CLUSTER_ACTIVITY,
    START_CONSOLIDATION_ACTIVITY,
    Policy,
)
from team_memory_core.llm.client import LLMError, LLMUsage
from team_memory_core.llm.consolidate import (
    ClusterMemory,
    ConsolidationAction,
    MergeAction,
    action_ids,
    plan_consolidation,
)
from team_memory_core.llm.manifesto import TopMemory, write_manifesto
from team_memory_core.models.consolidation import (
    ChangedReview,
    ChangedReviewRequest,
    ClusterOutcome,
    ClusterRequest,
    ConsolidationPage,
    ConsolidationReport,
    ManifestoOutcome,
    ManifestoRequest,
    ManifestoRule,
    PageRequest,
    ProjectRef,
    RunRequest,
)
from team_memory_core.models.memories import HistoryEvent, MemoryStatus
from team_memory_core.review import same_author, same_reach
from team_memory_core.rules import consolidation, injection
from team_memory_core.rules.redaction import redact
from team_memory_core.rules.text import approx_tokens
from team_memory_core.store import consolidation as store
from team_memory_core.store.consolidation import ClusterMember, WeightedMemory
from team_memory_core.store.history import insert_event
from team_memory_core.store.memories import lock_against_purge, mark_duplicate, supersede
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.proposals import Proposal, insert_proposal
from team_memory_core.store.tenants import tenant_id_named, tenant_name

# What a consolidation prompt costs beyond the memories' text (system prompt, tool schema,
# output): checked against the run's remaining token budget before each call.
PROMPT_OVERHEAD_TOKENS = 2_000


@dataclass(kw_only=True)
class ConsolidationActivities(EmbeddingActivities):
    """The nightly consolidation's steps (merged texts are embedded as saved ones are)."""

    client: Client

    @activity.defn(name=ENSURE_SCHEDULE_ACTIVITY)
    async def ensure_project_schedule(self, ref: ProjectRef) -> str:
        async with tenant_tx(self.pool, ref.tenant_id) as conn:
            tenant = await tenant_name(conn, ref.tenant_id)
        if tenant is None:
            raise ApplicationError(f"no tenant {ref.tenant_id}", non_retryable=True)
        sid = await schedules.ensure_schedule(self.client, self.settings, tenant, ref.project)
        async with tenant_tx(self.pool, ref.tenant_id) as conn:
            await store.mark_schedule_ensured(conn, ref.tenant_id, ref.project, sid)
        return sid

    @activity.defn(name=START_CONSOLIDATION_ACTIVITY)
    async def start_consolidation(self, request: RunRequest) -> ConsolidationReport:
        async with self.pool.acquire() as conn:
            tenant_id = await tenant_id_named(conn, request.tenant)
        if tenant_id is None:
            raise ApplicationError(f"no tenant named {request.tenant!r}", type="UnknownTenant",
                                   non_retryable=True)
        report = ConsolidationReport(
            run_id=request.run_id, tenant=request.tenant, tenant_id=tenant_id,
            project=request.project, policy=self.settings.dedupe_policy,
            model=self.distiller.model if self.distiller else None,
            token_budget=(self.settings.consolidation_token_budget
                          if request.token_budget is None else request.token_budget),
            page_size=request.page_size or self.settings.consolidation_page_size,
        )
        if self.distiller is None:
            report.notes.append("no ANTHROPIC_API_KEY: local policy only (exact and near "
                                "duplicates folded, decay, local manifesto)")
        async with tenant_tx(self.pool, tenant_id) as conn:
            await store.insert_run(
                conn, run_id=report.run_id, tenant_id=tenant_id, project=report.project,
                workflow_id=request.workflow_id, policy=report.policy, model=report.model,
                token_budget=report.token_budget,
            )
        return report

    @activity.defn(name=FIND_CLUSTERS_ACTIVITY)
    async def find_clusters(self, request: PageRequest) -> ConsolidationPage:
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            rows = await store.neighbourhoods(
                conn, request.project, request.cursor, request.page_size,
                self.settings.consolidation_neighbours, self.settings.consolidation_similarity,
            )
        return consolidation.neighbourhood_page(rows, request.page_size)

    @activity.defn(name=REVIEW_CLUSTER_ACTIVITY)
    async def review_cluster(self, request: ClusterRequest) -> ClusterOutcome:
        """Merge duplicates and resolve conflicts within one group of related memories."""
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            rows = await store.lock_cluster(conn, request.ids)
        live = [r for r in rows if r.status == MemoryStatus.ACTIVE]
        if all(r.reviewed for r in live):
            return ClusterOutcome(reviewed=False)
        if len(live) < 2:
            return await self._finish(request, live, ClusterOutcome(), "local", None)
        if self.distiller is None or not request.allow_llm:
            return await self._fold_locally(request, live, ClusterOutcome())
        if _estimate(live) > request.tokens_left:
            return await self._fold_locally(request, live,
                                            ClusterOutcome(skipped_for_budget=True))
        return await self._ask_model(request, live)

    async def _ask_model(
        self, request: ClusterRequest, live: list[ClusterMember]
    ) -> ClusterOutcome:
        assert self.distiller is not None
        cluster = [ClusterMemory(id=r.id, category=r.category.value,
                                 importance=float(r.importance), occurred_at=r.occurred_at,
                                 content=r.content)
                   for r in live]
        try:
            plan, usage = await plan_consolidation(self.distiller, cluster)
        except LLMError as error:
            raise llm_failure(error) from error
        spent = ClusterOutcome(llm_calls=1, input_tokens=usage.input_tokens,
                               output_tokens=usage.output_tokens)
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            current = {r.id: r for r in await store.lock_cluster(conn, request.ids)}
            if _reviewed_meanwhile(live, current):
                return spent.model_copy(update={"reviewed": False})
            log = _Log(conn, request, "haiku", usage)
            outcome = spent
            for action in plan.actions:
                outcome = await self._apply(log, action, live, current, outcome)
            revisited = await self._mark(log, _still_live(live, current))
        return outcome.model_copy(update={"revisited": revisited})

    async def _apply(
        self, log: _Log, action: ConsolidationAction, seen: list[ClusterMember],
        current: dict[UUID, ClusterMember], outcome: ClusterOutcome,
    ) -> ClusterOutcome:
        ids = action_ids(action)
        # The texts the model judged must still be the live ones (ingest may have moved on).
        if not all(_unchanged(r, current) for r in seen if r.id in ids) \
                or not same_reach(current[uid].private_to for uid in ids):
            return outcome
        if not same_author(current[uid].author_id for uid in ids):
            return await self._hold(log, action, outcome)
        if isinstance(action, MergeAction):
            others = [uid for uid in action.ids if uid != action.keep_id]
            merged = redact(action.merged_content).text
            used = self.model.current
            vector = await self.embedder.embed_one(merged)
            await self.model.confirm(log.conn, used)
            await store.fold_into(log.conn, action.keep_id, others, merged, vector)
            await log(HistoryEvent.MERGED, action.keep_id, action.reason,
                      before_text=current[action.keep_id].content,
                      after_text=merged, detail={"merged_from": others})
            for other in others:
                await mark_duplicate(log.conn, other, action.keep_id, was=MemoryStatus.ACTIVE)
                await log(HistoryEvent.MERGED_INTO, other, action.reason, related_id=action.keep_id)
            return outcome.model_copy(update={"merged": outcome.merged + len(others)})
        await supersede(log.conn, action.old_id, action.new_id)
        await log(HistoryEvent.SUPERSEDED, action.old_id, action.reason, related_id=action.new_id,
                  before_text=current[action.old_id].content,
                  after_text=current[action.new_id].content)
        return outcome.model_copy(update={"superseded": outcome.superseded + 1})

    async def _hold(self, log: _Log, action: ConsolidationAction,
                    outcome: ClusterOutcome) -> ClusterOutcome:
        """A merge or supersede across authors: recorded for review, nothing changed."""
        if isinstance(action, MergeAction):
            kind, target = "merge", action.keep_id
            sources = [uid for uid in action.ids if uid != action.keep_id]
            text: str | None = redact(action.merged_content).text
        else:
            kind, target, sources, text = "supersede", action.old_id, [action.new_id], None
        proposal = Proposal(
            kind=kind, target_id=target, source_ids=sources, proposed_text=text,
            reason=redact(action.reason).text, origin="consolidation", policy=log.policy,
            model=log.usage.model if log.usage else None, run_id=log.request.run_id)
        held = await insert_proposal(log.conn, log.request.tenant_id, log.request.project,
                                     proposal)
        if held is None:
            return outcome
        await log(HistoryEvent.proposed(kind), target, f"held for review (proposal {held}), not "
                  f"applied: the memories have different authors. {action.reason}".strip(),
                  related_id=sources[0], detail={"proposal_id": held, "sources": sources})
        return outcome.model_copy(update={"held_for_review": outcome.held_for_review + 1})

    async def _fold_locally(
        self, request: ClusterRequest, live: list[ClusterMember], outcome: ClusterOutcome
    ) -> ClusterOutcome:
        folds = consolidation.local_folds(live, self.settings.duplicate_similarity)
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            current = {r.id: r for r in await store.lock_cluster(conn, request.ids)}
            if _reviewed_meanwhile(live, current):
                return outcome.model_copy(update={"reviewed": False})
            log = _Log(conn, request, "local", None)
            folded = 0
            for fold in folds:
                pair = [r for r in live if r.id in (fold.duplicate, fold.keep)]
                if all(_unchanged(r, current) for r in pair) \
                        and same_reach(r.private_to for r in pair) \
                        and await mark_duplicate(
                        conn, fold.duplicate, fold.keep, was=MemoryStatus.ACTIVE):
                    await log(HistoryEvent.DUPLICATE, fold.duplicate, fold.reason,
                              related_id=fold.keep)
                    folded += 1
            revisited = await self._mark(log, _still_live(live, current))
        return outcome.model_copy(update={"folded": folded, "revisited": revisited})

    async def _finish(
        self, request: ClusterRequest, live: list[ClusterMember], outcome: ClusterOutcome,
        policy: str, usage: LLMUsage | None,
    ) -> ClusterOutcome:
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            current = {r.id: r for r in await store.lock_cluster(conn, request.ids)}
            if _reviewed_meanwhile(live, current):
                return outcome.model_copy(update={"reviewed": False})
            revisited = await self._mark(_Log(conn, request, policy, usage),
                                         _still_live(live, current))
        return outcome.model_copy(update={"revisited": revisited})

    async def _mark(self, log: _Log, reviewed: list[ClusterMember]) -> int:
        """Mark these (locked, current) members reviewed; returns how many were revisited."""
        revisited = [member for member in reviewed if member.needs_review]
        for member in revisited:
            await log(HistoryEvent.REVISITED, member.id, "reviewed by the nightly "
                      "consolidation after being kept without a model decision")
        await store.mark_reviewed(log.conn, [r.id for r in reviewed])
        return len(revisited)

    @activity.defn(name=ARCHIVE_ACTIVITY)
    async def archive_stale(self, report: ConsolidationReport) -> int:
        async with tenant_tx(self.pool, report.tenant_id) as conn:
            return await store.archive_stale(
                conn, tenant_id=report.tenant_id, project=report.project,
                max_importance=self.settings.archive_max_importance,
                half_life_days=self.settings.archive_half_life_days,
                threshold=self.settings.archive_threshold, run_id=report.run_id,
            )

    @activity.defn(name=REVIEW_CHANGED_ACTIVITY)
    async def review_changed_memories(self, request: ChangedReviewRequest) -> ChangedReview:
        """Memories whose files changed: listed, and judged by Haiku when it can (freshness.py)."""
        return await review_changed_memories(self.pool, self.distiller, request)

    @activity.defn(name=MANIFESTO_ACTIVITY)
    async def refresh_manifesto(self, request: ManifestoRequest) -> ManifestoOutcome:
        """Rewrite the manifesto when its input memories changed (else leave it alone)."""
        use_llm = self.distiller is not None and request.allow_llm
        policy = "haiku" if use_llm else "local"
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            top = await store.top_memories(conn, request.project,
                                           self.settings.archive_half_life_days,
                                           consolidation.MANIFESTO_CANDIDATES)
            stored = await store.manifesto(conn, request.project)
        digest = consolidation.manifesto_fingerprint(top, policy, self.settings)
        if stored is not None and stored.fingerprint == digest:
            return ManifestoOutcome(status="unchanged", policy=stored.policy,
                                    rules=len(stored.rules))
        usage = None
        if use_llm and _estimate(top) <= request.tokens_left:
            rules, usage = await self._written_rules(top)
        else:
            rules = consolidation.local_manifesto(top, self.settings.manifesto_max_rules,
                                                  self.settings.manifesto_token_budget)
            policy = "local"
        # Read as the team's rules at every session start: none may look aimed at agents.
        rules = [rule for rule in rules if not injection.flags_of(rule.text)]
        async with tenant_tx(self.pool, request.tenant_id) as conn:
            if await lock_against_purge(conn, [r.id for r in top]):
                # Purged while these rules were written: its text must not come back.
                count = await consolidation.write_local_manifesto(
                    conn, request.tenant_id, request.project, self.settings)
                return ManifestoOutcome(
                    status="regenerated", policy=Policy.LOCAL, rules=count,
                    llm_calls=int(usage is not None),
                    input_tokens=usage.input_tokens if usage else 0,
                    output_tokens=usage.output_tokens if usage else 0)
            await store.upsert_manifesto(
                conn, tenant_id=request.tenant_id, project=request.project, rules=rules,
                fingerprint=digest, policy=policy, model=usage.model if usage else None,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
            )
        return ManifestoOutcome(
            status="regenerated", policy=Policy.HAIKU if usage else Policy.LOCAL, rules=len(rules),
            llm_calls=int(usage is not None), input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
        )

    async def _written_rules(
        self, top: list[WeightedMemory]
    ) -> tuple[list[ManifestoRule], LLMUsage]:
        assert self.distiller is not None
        memories = [TopMemory(id=r.id, category=r.category.value,
                              importance=float(r.importance), content=r.content)
                    for r in top]
        try:
            written, usage = await write_manifesto(self.distiller, memories,
                                                   self.settings.manifesto_max_rules)
        except LLMError as error:
            raise llm_failure(error) from error
        rules = [ManifestoRule(text=redact(rule.text).text, source_ids=rule.source_ids)
                 for rule in written]
        return consolidation.within_budget(rules, self.settings.manifesto_max_rules,
                                           self.settings.manifesto_token_budget), usage

    @activity.defn(name=FINISH_CONSOLIDATION_ACTIVITY)
    async def finish_consolidation(self, report: ConsolidationReport) -> None:
        async with tenant_tx(self.pool, report.tenant_id) as conn:
            await store.finish_run(conn, report.run_id, report.input_tokens,
                                     report.output_tokens, report.model_dump(mode="json"))


def _estimate(rows: list[ClusterMember] | list[WeightedMemory]) -> int:
    return PROMPT_OVERHEAD_TOKENS + sum(approx_tokens(r.content) for r in rows)


def _reviewed_meanwhile(live: list[ClusterMember], current: dict[UUID, ClusterMember]) -> bool:
    """Another run of this review (a retry after a timeout, an overlapping run) reviewed
    every member between the first read and the lock: its decisions stand, this one's go."""
    return all(now.reviewed or now.status != MemoryStatus.ACTIVE
               for r in live if (now := current.get(r.id)) is not None)


def _still_live(live: list[ClusterMember], current: dict[UUID, ClusterMember]) -> list[
        ClusterMember]:
    """The members as locked now, of those still as they were read."""
    return [current[r.id] for r in live if _unchanged(r, current)]


def _unchanged(seen: ClusterMember, current: dict[UUID, ClusterMember]) -> bool:
    now = current.get(seen.id)
    return now is not None and now.status == MemoryStatus.ACTIVE and now.content == seen.content


@dataclass
class _Log:
    """History events of one cluster review, tagged with the run, policy and model."""

    conn: asyncpg.Connection
    request: ClusterRequest
    policy: str
    usage: LLMUsage | None
    _billed: bool = False

    async def __call__(
        self, event: HistoryEvent, memory_id: UUID, reason: str, *,
        related_id: UUID | None = None,
        before_text: str | None = None, after_text: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        # The plan's tokens are recorded once, on its first event, so sums stay true.
        tokens = self.usage if self.usage is not None and not self._billed else None
        self._billed = self._billed or tokens is not None
        await insert_event(
            self.conn, tenant_id=self.request.tenant_id, memory_id=memory_id, event=event,
            reason=redact(reason).text or None, before_text=before_text, after_text=after_text,
            related_id=related_id, policy=self.policy,
            model=self.usage.model if self.usage else None,
            input_tokens=tokens.input_tokens if tokens else None,
            output_tokens=tokens.output_tokens if tokens else None,
            detail={"run_id": str(self.request.run_id), "consolidation": True,
                    **(detail or {})},
        )
