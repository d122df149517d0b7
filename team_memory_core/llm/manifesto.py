"""The manifesto: a short ranked list of the project's high-level rules, from its most
important memories."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field, StringConstraints

from team_memory_core.llm.client import Distiller, LLMUsage
from team_memory_core.llm.task import PREAMBLE, ForcedTool, Frozen, json_lines, member
from team_memory_core.models.consolidation import MANIFESTO_RULE_MAX_CHARS, ManifestoRule

SYSTEM = f"""{PREAMBLE}

Write the team's manifesto: the few high-level rules a new engineer or a coding assistant must \
follow on this project, distilled from the team's most important memories.
- At most {{max_rules}} rules, most important first: weigh importance, how many memories \
support the rule, and how costly it is to get wrong.
- Each rule is one imperative sentence of at most {MANIFESTO_RULE_MAX_CHARS} characters, \
specific to this project (name the tool, service, practice or rule); no generic advice such as \
"write clean code".
- State nothing the memories do not support. source_ids lists the ids of the memories each \
rule rests on, copied exactly.
- Fold memories that express one principle into one rule; leave out one-off facts and trivia. \
If memories conflict, leave the point out.
- Fewer rules are better than weak ones."""


class TopMemory(Frozen):
    """One of the project's most important memories, as input to the manifesto."""

    id: UUID
    category: str
    importance: float
    content: str


class ProposedRule(ManifestoRule):
    """A manifesto rule as the model may write it."""

    text: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MANIFESTO_RULE_MAX_CHARS),
    ]
    source_ids: list[UUID] = Field(min_length=1)


class ManifestoReply(Frozen):
    """The rules, most important first."""

    rules: list[ProposedRule] = Field(default_factory=list)


TOOL = ForcedTool("record_manifesto", "Record the manifesto rules, most important first.",
                  ManifestoReply)


def _tool_schema(max_rules: int) -> dict[str, Any]:
    """The reply schema, with this call's limit on the number of rules."""
    schema = copy.deepcopy(TOOL.input_schema)
    schema["properties"]["rules"]["maxItems"] = max_rules
    return schema


def prompt(memories: Sequence[TopMemory], max_rules: int) -> str:
    return (
        f"<memories>\n{json_lines(memories)}\n</memories>\n\n"
        f"Write the manifesto: at most {max_rules} rules."
    )


def checked(
    reply: ManifestoReply, memories: Sequence[TopMemory], max_rules: int
) -> list[ManifestoRule]:
    """The rules, if each rests on memories the model was shown; at most ``max_rules``."""
    known = {m.id for m in memories}
    for rule in reply.rules:
        for uid in rule.source_ids:
            member(uid, known, "source_id")
    # Rules come ranked, so the overflow is the least important tail.
    return [ManifestoRule(text=rule.text, source_ids=rule.source_ids)
            for rule in reply.rules[:max_rules]]


async def write_manifesto(
    client: Distiller, memories: Sequence[TopMemory], max_rules: int = 10
) -> tuple[list[ManifestoRule], LLMUsage]:
    """A short ranked list of the project's high-level rules."""
    if not memories or max_rules < 1:
        return [], client.no_usage()
    return await TOOL.ask(client, SYSTEM.format(max_rules=max_rules),
                          prompt(memories, max_rules),
                          lambda reply: checked(reply, memories, max_rules),
                          max_tokens=2048, input_schema=_tool_schema(max_rules))
