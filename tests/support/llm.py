"""Helpers for tests of the LLM tasks: what the fake Messages API was offered, and whether a
reply is one the offered tool schema allows."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from tests.support.anthropic_server import FakeAnthropic

MODEL = "claude-haiku-4-5"


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
