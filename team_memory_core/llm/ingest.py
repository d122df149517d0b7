"""The ingest decision: a new memory against the most similar stored ones (add, duplicate,
update with merged text, or supersede)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Self
from uuid import UUID

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from team_memory_core.llm.client import Distiller, LLMUsage
from team_memory_core.llm.screen import CRITERIA, AgentDirected
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
from team_memory_core.models.decisions import DecisionKind

SYSTEM = f"""{PREAMBLE}

A new memory is about to be stored. You see it with the most similar memories already stored \
(the candidates, each with its cosine similarity to the new one). Choose exactly one action.

ADD: the new memory says something no candidate already says. This includes a memory on the \
same topic that states a separate fact, and a related memory that conflicts with nothing. When \
unsure, choose ADD: a near-duplicate costs little, a lost or corrupted memory costs a lot.

DUPLICATE: one candidate already says everything the new memory says; only the wording \
differs. If the new memory adds any detail (a version, reason, scope, exception, name, number, \
date, link), it is not a duplicate.

UPDATE: the new memory refines or extends one candidate and both remain true: it adds a detail, \
reason, exception or example to the same point, or changes one detail of it. merged_content is \
that candidate rewritten as one memory that keeps every fact of the candidate and adds the new \
information. Never drop or weaken a detail of either text. Copy identifiers, versions, numbers, \
names, code and links exactly. Where the new memory changes a detail, state the new value and \
keep the old one as history (e.g. "... uses Zustand (replaced Redux in 2024)"). Keep the \
language and style of the originals and stay about as concise.

SUPERSEDE: the new memory contradicts a candidate and replaces it as a whole: the team reversed \
a decision, migrated, or the old statement is simply no longer true (e.g. "We use React for the \
frontend" then "We migrated the frontend to Svelte"). Choose it only when both cannot be true at \
once. A different topic, a different scope or environment, or an added exception is not a \
contradiction. If the new memory changes only part of a candidate, choose UPDATE instead so the \
unchanged facts survive.

High similarity alone proves nothing: "Staging runs Postgres 15" and "Production runs Postgres \
16" are very similar and both true (ADD). For DUPLICATE, UPDATE and SUPERSEDE, target_id is the \
id of the one candidate concerned, copied exactly; if several fit, take the most directly \
concerned. reason is one short sentence for the audit log.

Screening, whatever the action: {CRITERIA}"""


class Candidate(Frozen):
    """A live memory similar to the one being ingested."""

    id: UUID
    category: str
    similarity: float
    content: str


class IngestDecision(Frozen):
    """The checked decision: a target for every action but ADD, merged text for UPDATE only;
    and the new memory's injection screening (llm/screen.py), asked for in the same call."""

    action: DecisionKind
    target_id: UUID | None = None
    merged_content: NonEmptyText | None = None
    reason: Reason = ""
    screening: AgentDirected | None = None

    @model_validator(mode="after")
    def _fields_match_action(self) -> Self:
        if (self.target_id is None) != (self.action is DecisionKind.ADD):
            raise ValueError("target_id is required for every action but ADD, and only for them")
        if (self.merged_content is not None) != (self.action is DecisionKind.UPDATE):
            raise ValueError("merged_content is required for UPDATE, and only for it")
        return self


def _by_name(value: object) -> object:
    if isinstance(value, str) and value in DecisionKind.__members__:
        return DecisionKind[value]
    return value


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# The model names the actions in capitals, as the prompt does; the decision carries the
# DecisionKind the workflow records.
ModelAction = Annotated[
    DecisionKind,
    BeforeValidator(_by_name),
    WithJsonSchema({"type": "string", "enum": list(DecisionKind.__members__)}),
]


class IngestReply(Frozen):
    """The decision as the model writes it."""

    # First: the model writes properties in order, so it argues before it decides.
    reason: Reason = Field(default="", description="One short sentence for the audit log.")
    action: ModelAction
    target_id: Annotated[UUID | None, BeforeValidator(_blank_to_none)] = Field(
        default=None, description="id of the candidate concerned. Required for DUPLICATE, "
        "UPDATE and SUPERSEDE; omit for ADD.")
    merged_content: str | None = Field(
        default=None, description="UPDATE only: the candidate rewritten to include the new "
        "information, keeping every fact of both.")
    screening: AgentDirected = Field(
        default=AgentDirected(), description="Whether the new memory is aimed at AI agents.")


TOOL = ForcedTool("record_ingest_decision", "Record the one action to take for the new memory.",
                  IngestReply)


def prompt(content: str, category: str, candidates: Sequence[Candidate]) -> str:
    new = json.dumps({"category": category, "content": content}, ensure_ascii=False)
    return (
        f"<candidates>\n{json_lines(candidates)}\n</candidates>\n\n"
        f"<new_memory>\n{new}\n</new_memory>\n\n"
        "Decide what to do with the new memory."
    )


def checked(reply: IngestReply, candidates: Sequence[Candidate], max_chars: int) -> IngestDecision:
    """The reply, if its target is a candidate and its merged text fits."""
    if reply.action is DecisionKind.ADD:
        return IngestDecision(action=reply.action, reason=reply.reason,
                              screening=reply.screening)
    target = member(reply.target_id, {c.id for c in candidates}, "target_id")
    merged = None
    if reply.action is DecisionKind.UPDATE:
        merged = bounded(reply.merged_content, max_chars, "merged_content")
    return IngestDecision(
        action=reply.action, target_id=target, merged_content=merged, reason=reply.reason,
        screening=reply.screening,
    )


async def decide_ingest(
    client: Distiller, content: str, category: str, candidates: Sequence[Candidate]
) -> tuple[IngestDecision, LLMUsage]:
    """One decision for a new memory against similar live memories."""
    if not candidates:
        decision = IngestDecision(action=DecisionKind.ADD, reason="No similar memory.")
        return decision, client.no_usage()
    return await TOOL.ask(client, SYSTEM, prompt(content, category, candidates),
                          lambda reply: checked(reply, candidates, client.max_content_chars),
                          max_tokens=4096)
