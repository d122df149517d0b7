"""The consolidation plan (team_memory_core.llm.consolidate) against the scripted fake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from team_memory_core.llm.client import Distiller, MalformedLLMOutput
from team_memory_core.llm.consolidate import (
    TOOL,
    ClusterMemory,
    MergeAction,
    SupersedeAction,
    plan_consolidation,
)
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import conforms, sent_tool

pytestmark = pytest.mark.anyio


@pytest.fixture
def cluster() -> list[ClusterMemory]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    texts = [
        "Deploys go through ArgoCD.",
        "All deployments are done with ArgoCD, never kubectl apply.",
        "We use React for the frontend.",
        "We migrated the frontend to Svelte.",
    ]
    return [
        ClusterMemory(id=uuid4(), content=text, category="decision", importance=0.5,
                      occurred_at=start + timedelta(days=i))
        for i, text in enumerate(texts)
    ]


def merge(ids: list[UUID], keep: UUID) -> dict[str, Any]:
    return {"reason": "Same rule.", "action": "MERGE", "ids": [str(i) for i in ids],
            "keep_id": str(keep), "merged_content": "Deploy only with ArgoCD, never kubectl."}


def supersede(old: UUID, new: UUID) -> dict[str, Any]:
    return {"reason": "Migrated.", "action": "SUPERSEDE", "old_id": str(old), "new_id": str(new)}


async def test_consolidation_plan_is_parsed(
    fake: FakeAnthropic, distiller: Distiller, cluster: list[ClusterMemory]
) -> None:
    a, b, react, svelte = (m.id for m in cluster)
    fake.script(FakeAnthropic.tool_result(
        {"actions": [merge([a, b], b), supersede(react, svelte)]}, input_tokens=900))

    plan, usage = await plan_consolidation(distiller, cluster)

    merge_action, supersede_action = plan.actions
    assert isinstance(merge_action, MergeAction)
    assert (merge_action.ids, merge_action.keep_id) == ([a, b], b)
    assert isinstance(supersede_action, SupersedeAction)
    assert (supersede_action.old_id, supersede_action.new_id) == (react, svelte)
    assert usage.input_tokens == 900
    prompt = fake.requests[0]["messages"][0]["content"]
    assert all(str(m.id) in prompt and m.content in prompt for m in cluster)


async def test_empty_consolidation_plan(
    fake: FakeAnthropic, distiller: Distiller, cluster: list[ClusterMemory]
) -> None:
    fake.script(FakeAnthropic.tool_result({"actions": []}))

    plan, _ = await plan_consolidation(distiller, cluster)

    assert plan.actions == []


async def test_a_single_memory_is_planned_without_a_call(
    fake: FakeAnthropic, distiller: Distiller, cluster: list[ClusterMemory]
) -> None:
    plan, usage = await plan_consolidation(distiller, cluster[:1])

    assert (plan.actions, usage.input_tokens, fake.calls) == ([], 0, 0)


async def test_the_tool_schema_is_generated_from_the_reply_model(
    fake: FakeAnthropic, distiller: Distiller, cluster: list[ClusterMemory]
) -> None:
    a, b, react, svelte = (m.id for m in cluster)
    reply = {"actions": [merge([a, b], b), supersede(react, svelte)]}
    fake.script(FakeAnthropic.tool_result(reply))

    await plan_consolidation(distiller, cluster)

    schema = sent_tool(fake)["input_schema"]
    assert schema == TOOL.input_schema
    assert "$defs" not in str(schema) and "$ref" not in str(schema)
    merge_schema, supersede_schema = schema["properties"]["actions"]["items"]["anyOf"]
    assert merge_schema["required"] == list(MergeAction.model_fields)
    assert supersede_schema["required"] == list(SupersedeAction.model_fields)
    assert merge_schema["properties"]["ids"]["minItems"] == 2
    assert conforms(reply, schema)
    assert not conforms({"actions": [{"action": "DELETE", "ids": [str(a)]}]}, schema)


@pytest.mark.parametrize(
    "make_actions",
    [
        pytest.param(lambda ids: [merge([ids[0]], ids[0])], id="merge-single-id"),
        pytest.param(lambda ids: [merge([ids[0], ids[1]], ids[2])], id="keep-outside-merge"),
        pytest.param(lambda ids: [merge([ids[0], uuid4()], ids[0])], id="merge-unknown-id"),
        pytest.param(lambda ids: [supersede(ids[0], uuid4())], id="supersede-unknown-id"),
        pytest.param(lambda ids: [supersede(ids[3], ids[2])], id="older-replaces-newer"),
        pytest.param(lambda ids: [supersede(ids[1], ids[1])], id="supersede-itself"),
        pytest.param(
            lambda ids: [merge([ids[0], ids[1]], ids[1]), supersede(ids[1], ids[3])],
            id="id-in-two-actions",
        ),
        pytest.param(lambda ids: [{"action": "DELETE", "ids": [str(ids[0])]}], id="unknown-action"),
    ],
)
async def test_invalid_consolidation_is_malformed(
    fake: FakeAnthropic, distiller: Distiller, cluster: list[ClusterMemory], make_actions: Any
) -> None:
    fake.script(FakeAnthropic.tool_result({"actions": make_actions([m.id for m in cluster])}))

    with pytest.raises(MalformedLLMOutput):
        await plan_consolidation(distiller, cluster)
