"""Helpers for tests of the LLM tasks: what the fake Messages API was offered, and whether a
reply is one the offered tool schema allows."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from jsonschema import Draft202012Validator

from team_memory_core.llm.screen import TOOL as SCREEN_TOOL
from tests.support.anthropic_server import FakeAnthropic, Reply

MODEL = "claude-haiku-4-5"
BENIGN_SCREENING = {"reason": "An ordinary team memory.", "aimed_at_agents": False}


def answer_screenings(fake: FakeAnthropic) -> None:
    """Answer the injection screening of a project's first memory (llm/screen.py) as benign,
    unless the test scripted that tool's replies (``script_for``): tests of other features
    script their calls one by one and need not know about it."""
    fake.when(lambda c: c.forced_tool == SCREEN_TOOL.name
              and not fake.scripted_for(SCREEN_TOOL.name),
              FakeAnthropic.tool_result(BENIGN_SCREENING))


def sent_tool(fake: FakeAnthropic) -> dict[str, Any]:
    """The one tool the last request offered, checked to be the one it forces."""
    body = fake.requests[-1]
    [tool] = body["tools"]
    assert body["tool_choice"] == {"type": "tool", "name": tool["name"]}
    return dict(tool)


def conforms(reply: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Whether the schema (itself valid JSON Schema) allows the reply."""
    Draft202012Validator.check_schema(schema)
    return bool(Draft202012Validator(schema).is_valid(reply))


def calls_but_screenings(fake: FakeAnthropic) -> int:
    """The model calls made, a first memory's injection screening left out."""
    return sum(1 for c in fake.conversations if c.forced_tool != SCREEN_TOOL.name)


def merge_plan(keep: UUID, other: UUID, merged: str, reason: str = "Same rule.") -> Reply:
    """The consolidation plan that merges ``other`` into ``keep``, whose text becomes
    ``merged``."""
    return FakeAnthropic.tool_result({"actions": [{
        "action": "MERGE", "ids": [str(keep), str(other)], "keep_id": str(keep),
        "merged_content": merged, "reason": reason}]})


def no_rules() -> Reply:
    """A manifesto the model wrote with no rule."""
    return FakeAnthropic.tool_result({"rules": []})
