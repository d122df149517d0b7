"""The manifesto (team_memory_core.llm.manifesto) against the scripted fake."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from team_memory_core.llm.client import Distiller, MalformedLLMOutput
from team_memory_core.llm.manifesto import TOOL, TopMemory, write_manifesto
from team_memory_core.models.consolidation import ManifestoRule
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import conforms, sent_tool

pytestmark = pytest.mark.anyio


@pytest.fixture
def top() -> list[TopMemory]:
    texts = ["Deploy only with ArgoCD.", "Money is stored as integer cents.", "Use Svelte."]
    return [TopMemory(id=uuid4(), content=t, category="decision", importance=0.9) for t in texts]


def rule(text: str, *ids: UUID) -> dict[str, Any]:
    return {"text": text, "source_ids": [str(i) for i in ids]}


async def test_manifesto_is_parsed_and_capped(
    fake: FakeAnthropic, distiller: Distiller, top: list[TopMemory]
) -> None:
    rules = [
        rule("Store money as integer cents.", top[1].id),
        rule("Deploy only through ArgoCD.", top[0].id),
        rule("Build UI in Svelte.", top[2].id),
    ]
    fake.script(FakeAnthropic.tool_result({"rules": rules}))

    written, _ = await write_manifesto(distiller, top, max_rules=2)

    assert written == [
        ManifestoRule(text="Store money as integer cents.", source_ids=[top[1].id]),
        ManifestoRule(text="Deploy only through ArgoCD.", source_ids=[top[0].id]),
    ]
    assert "at most 2 rules" in fake.requests[0]["messages"][0]["content"]


async def test_the_tool_schema_is_the_reply_model_with_this_calls_limit(
    fake: FakeAnthropic, distiller: Distiller, top: list[TopMemory]
) -> None:
    reply = {"rules": [rule("Deploy only through ArgoCD.", top[0].id)]}
    fake.script(FakeAnthropic.tool_result(reply))

    await write_manifesto(distiller, top, max_rules=2)

    schema = sent_tool(fake)["input_schema"]
    rules = schema["properties"]["rules"]
    assert rules["maxItems"] == 2
    assert {**schema, "properties": {"rules": {k: v for k, v in rules.items()
                                               if k != "maxItems"}}} == TOOL.input_schema
    assert "maxItems" not in TOOL.input_schema["properties"]["rules"], "the call's copy only"
    assert rules["items"]["required"] == list(ManifestoRule.model_fields)
    assert rules["items"]["properties"]["text"]["maxLength"] == 200
    assert conforms(reply, schema)
    assert not conforms({"rules": [rule("No source.")]}, schema)


async def test_nothing_to_write_from_makes_no_call(
    fake: FakeAnthropic, distiller: Distiller, top: list[TopMemory]
) -> None:
    assert (await write_manifesto(distiller, [], max_rules=5))[0] == []
    assert (await write_manifesto(distiller, top, max_rules=0))[0] == []
    assert fake.calls == 0


@pytest.mark.parametrize(
    "make_rule",
    [
        pytest.param(lambda ids: rule("x" * 201, ids[0]), id="text-too-long"),
        pytest.param(lambda ids: rule("Rule.", uuid4()), id="unknown-source"),
        pytest.param(lambda ids: rule("Rule."), id="no-source"),
        pytest.param(lambda ids: rule("  ", ids[0]), id="blank-text"),
    ],
)
async def test_invalid_manifesto_is_malformed(
    fake: FakeAnthropic, distiller: Distiller, top: list[TopMemory], make_rule: Any
) -> None:
    fake.script(FakeAnthropic.tool_result({"rules": [make_rule([m.id for m in top])]}))

    with pytest.raises(MalformedLLMOutput):
        await write_manifesto(distiller, top, max_rules=5)
