"""Tool input schemas generated from reply models (team_memory_core.llm.task.tool_schema)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel, Field

from team_memory_core.llm.client import MalformedLLMOutput
from team_memory_core.llm.task import ForcedTool, tool_schema
from tests.support.llm import conforms


class Inner(BaseModel):
    """An inner model."""

    x: int


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    bark: str


class Reply(BaseModel):
    reason: str = ""
    title: str
    target: UUID | None = None
    inner: Inner = Field(description="The inner part.")
    pets: list[Annotated[Cat | Dog, Field(discriminator="kind")]] = Field(default_factory=list)


def test_a_field_is_optional_only_when_it_defaults_to_none() -> None:
    schema = tool_schema(Reply)

    assert schema["required"] == ["reason", "title", "inner", "pets"]
    assert schema["properties"]["target"] == {"type": "string", "format": "uuid"}
    assert "default" not in str(schema)


def test_the_schema_is_self_contained_and_plain_json_schema() -> None:
    schema = tool_schema(Reply)

    assert "$ref" not in str(schema) and "$defs" not in schema
    assert schema["properties"]["inner"] == {
        "description": "The inner part.", "type": "object",
        "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    assert "title" in schema["properties"], "a field named title is kept"
    assert "title" not in schema and "title" not in schema["properties"]["inner"]
    pets = schema["properties"]["pets"]["items"]
    assert set(pets) == {"anyOf"}, "oneOf as anyOf, OpenAPI's discriminator dropped"
    reply = {"reason": "r", "title": "t", "inner": {"x": 1},
             "pets": [{"kind": "cat"}, {"kind": "dog", "bark": "woof"}]}
    assert conforms(reply, schema)
    assert not conforms({**reply, "pets": [{"kind": "dog"}]}, schema)


def test_a_reply_that_does_not_validate_is_malformed_and_says_where() -> None:
    tool = ForcedTool("record", "Record it.", Reply)

    with pytest.raises(MalformedLLMOutput, match=r"inner\.x: "):
        tool.validate({"title": "t", "inner": {"x": "many"}})
    assert tool.param()["input_schema"] == tool_schema(Reply)
