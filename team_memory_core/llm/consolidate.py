"""The consolidation plan: merges and supersessions within a cluster of related memories."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from team_memory_core.llm.client import Distiller, LLMUsage, MalformedLLMOutput
from team_memory_core.llm.task import (
    PREAMBLE,
    ForcedTool,
    Frozen,
    NonEmptyText,
    Reason,
    bounded,
    json_lines,
    member,
)

SYSTEM = f"""{PREAMBLE}

You review a cluster of related memories that are all currently considered true, and propose \
changes that make the memory smaller and consistent without losing anything. Propose only \
changes you are sure of; an empty list of actions is a good and common answer.

MERGE: two or more memories state the same point, or parts of one point, and a single memory \
can say it all. ids lists all of them; keep_id is the one to keep (usually the most complete or \
most important); merged_content is one memory that keeps every fact, detail, identifier, \
number, caveat and link of every merged memory, copied exactly, with nothing dropped or \
weakened. Do not merge memories that merely share a topic; merge only when the result is still \
one focused statement.

SUPERSEDE: one memory contradicts another and replaces it: the team reversed a decision, \
migrated, or the old statement is no longer true. old_id is the memory that is no longer true, \
new_id the one that replaces it. Use occurred_at to tell them apart: the newer one wins, and \
new_id must not be older than old_id. Only for a real contradiction: a different scope, \
environment or added exception is not one.

Use only ids from the cluster, copied exactly. Each memory may appear in at most one action. \
Give each action a one-sentence reason for the audit log."""

_REASON = "One short sentence for the audit log."
ClusterId = Annotated[UUID, Field(description="A memory id from the cluster.")]


class ClusterMemory(Frozen):
    """A current memory in a cluster of related ones under review."""

    id: UUID
    category: str
    importance: float
    occurred_at: datetime
    content: str


class MergeAction(Frozen):
    """Fold ids into keep_id, whose text becomes merged_content."""

    reason: Reason = Field(default="", description=_REASON)
    action: Literal["MERGE"] = "MERGE"
    ids: list[ClusterId] = Field(min_length=2)
    keep_id: ClusterId
    merged_content: NonEmptyText


class SupersedeAction(Frozen):
    """old_id is no longer true; new_id replaces it."""

    reason: Reason = Field(default="", description=_REASON)
    action: Literal["SUPERSEDE"] = "SUPERSEDE"
    old_id: ClusterId
    new_id: ClusterId


ConsolidationAction = Annotated[MergeAction | SupersedeAction, Field(discriminator="action")]


class ConsolidationPlan(Frozen):
    """The changes to make to the cluster, each memory in at most one of them."""

    actions: list[ConsolidationAction] = Field(default_factory=list)


TOOL = ForcedTool(
    "record_consolidation_plan",
    "Record the changes to make to the cluster; an empty list when none is needed.",
    ConsolidationPlan,
)


def prompt(memories: Sequence[ClusterMemory]) -> str:
    return (
        f"<cluster>\n{json_lines(memories)}\n</cluster>\n\n"
        "Propose the consolidation plan for this cluster."
    )


def action_ids(action: ConsolidationAction) -> list[UUID]:
    """The memories an action changes."""
    if isinstance(action, MergeAction):
        return action.ids
    return [action.old_id, action.new_id]


def _check_action(
    action: ConsolidationAction, cluster: dict[UUID, ClusterMemory], max_chars: int
) -> None:
    for uid in action_ids(action):
        member(uid, cluster.keys(), "id")
    if isinstance(action, MergeAction):
        if action.keep_id not in action.ids:
            raise MalformedLLMOutput(f"MERGE keep_id {action.keep_id} is not among its ids")
        bounded(action.merged_content, max_chars, "merged_content")
    elif cluster[action.new_id].occurred_at < cluster[action.old_id].occurred_at:
        # The newer memory must win, or the team's current truth would be retired.
        raise MalformedLLMOutput(f"SUPERSEDE would replace {action.old_id} with an older memory")


def checked(
    plan: ConsolidationPlan, memories: Sequence[ClusterMemory], max_chars: int
) -> ConsolidationPlan:
    """The plan, if it names only the cluster's ids, each at most once, the newer winning."""
    cluster = {m.id: m for m in memories}
    seen: set[UUID] = set()
    for action in plan.actions:
        _check_action(action, cluster, max_chars)
        ids = action_ids(action)
        if seen.intersection(ids) or len(set(ids)) != len(ids):
            raise MalformedLLMOutput("a memory appears more than once in the plan")
        seen.update(ids)
    return plan


async def plan_consolidation(
    client: Distiller, memories: Sequence[ClusterMemory]
) -> tuple[ConsolidationPlan, LLMUsage]:
    """Merges and supersessions within a cluster of related current memories."""
    if len(memories) < 2:
        return ConsolidationPlan(), client.no_usage()
    return await TOOL.ask(client, SYSTEM, prompt(memories),
                          lambda plan: checked(plan, memories, client.max_content_chars),
                          max_tokens=8192)
