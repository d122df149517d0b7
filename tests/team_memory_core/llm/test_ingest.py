"""The ingest decision (team_memory_core.llm.ingest) against the scripted fake Messages API."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from team_memory_core.llm.client import Distiller, LLMUsage, MalformedLLMOutput
from team_memory_core.llm.ingest import (
    TOOL,
    Candidate,
    IngestDecision,
    IngestReply,
    decide_ingest,
)
from team_memory_core.llm.screen import AgentDirected
from team_memory_core.models.decisions import DecisionKind
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import MODEL, conforms, sent_tool

pytestmark = pytest.mark.anyio

NEW_CONTENT = "We migrated the frontend from React to Svelte."


@pytest.fixture
def candidates() -> list[Candidate]:
    return [
        Candidate(id=uuid4(), content="We use React for the frontend.", category="decision",
                  similarity=0.91),
        Candidate(id=uuid4(), content="Frontend builds run on Vite.", category="decision",
                  similarity=0.74),
    ]


async def decide(distiller: Distiller, candidates: list[Candidate]) -> IngestDecision:
    decision, _ = await decide_ingest(distiller, NEW_CONTENT, "decision", candidates)
    return decision


async def test_add_returns_decision_and_usage(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    fake.script(FakeAnthropic.tool_result({"reason": "A new fact.", "action": "ADD"},
                                          input_tokens=321, output_tokens=17))

    decision, usage = await decide_ingest(distiller, NEW_CONTENT, "decision", candidates)

    assert decision == IngestDecision(action=DecisionKind.ADD, reason="A new fact.",
                                      screening=AgentDirected())
    assert usage == LLMUsage(model=MODEL, input_tokens=321, output_tokens=17)


@pytest.mark.parametrize("action", ["DUPLICATE", "SUPERSEDE"])
async def test_targeted_decisions(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate], action: str
) -> None:
    target = candidates[0].id
    fake.script(
        FakeAnthropic.tool_result({"reason": "r", "action": action, "target_id": str(target)})
    )

    decision = await decide(distiller, candidates)

    assert decision.action is DecisionKind[action]
    assert decision.target_id == target
    assert decision.merged_content is None


async def test_the_decision_is_the_kind_the_workflow_records(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    """One enum: the model's capitalised action arrives as the DecisionKind of the payloads."""
    fake.script(FakeAnthropic.tool_result(
        {"reason": "r", "action": "SUPERSEDE", "target_id": str(candidates[0].id)}))

    decision = await decide(distiller, candidates)

    assert decision.action.value == "supersede"


async def test_update_carries_merged_content(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    merged = "Frontend builds run on Vite 5 with the SWC plugin."
    fake.script(FakeAnthropic.tool_result({
        "reason": "Adds the version.", "action": "UPDATE",
        "target_id": str(candidates[1].id).upper(), "merged_content": f"  {merged}\n",
    }))

    decision = await decide(distiller, candidates)

    assert decision.action is DecisionKind.UPDATE
    assert decision.target_id == candidates[1].id
    assert decision.merged_content == merged


async def test_add_ignores_stray_fields(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    fake.script(FakeAnthropic.tool_result(
        {"reason": "r", "action": "ADD", "target_id": "", "merged_content": "x"}))

    decision = await decide(distiller, candidates)

    assert (decision.target_id, decision.merged_content) == (None, None)


async def test_prompt_shows_the_candidates_and_the_new_memory(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    fake.script(FakeAnthropic.tool_result({"reason": "r", "action": "ADD"}))

    await decide(distiller, candidates)

    [body] = fake.requests
    prompt = body["messages"][0]["content"]
    for candidate in candidates:
        assert str(candidate.id) in prompt
        assert candidate.content in prompt
    assert NEW_CONTENT in prompt
    assert "never instructions" in body["system"]


async def test_the_tool_schema_is_generated_from_the_reply_model(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    reply = {"reason": "r", "action": "UPDATE", "target_id": str(candidates[0].id),
             "merged_content": "We use React 19 for the frontend.",
             "screening": {"reason": "A plain fact.", "aimed_at_agents": False}}
    fake.script(FakeAnthropic.tool_result(reply))

    await decide(distiller, candidates)

    schema = sent_tool(fake)["input_schema"]
    assert schema == TOOL.input_schema
    assert list(schema["properties"]) == list(IngestReply.model_fields)  # reason first
    assert schema["required"] == ["reason", "action", "screening"]
    assert schema["properties"]["screening"]["required"] == ["reason", "aimed_at_agents"]
    assert schema["properties"]["action"]["enum"] == [k.name for k in DecisionKind]
    assert conforms(reply, schema)
    assert not conforms({"reason": "r", "action": "add"}, schema)
    assert not conforms({key: value for key, value in reply.items() if key != "screening"},
                        schema)
    assert not conforms({"action": "ADD"}, schema)


async def test_no_candidates_adds_without_a_call(fake: FakeAnthropic, distiller: Distiller) -> None:
    decision, usage = await decide_ingest(distiller, NEW_CONTENT, "decision", [])

    assert decision.action is DecisionKind.ADD
    assert usage.input_tokens == usage.output_tokens == 0
    assert fake.calls == 0


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param({"reason": "r", "action": "DUPLICATE", "target_id": str(uuid4())},
                     id="target-outside-candidates"),
        pytest.param({"reason": "r", "action": "SUPERSEDE"}, id="target-missing"),
        pytest.param({"reason": "r", "action": "DUPLICATE", "target_id": "not-a-uuid"},
                     id="target-not-uuid"),
        pytest.param({"reason": "r", "action": "UPDATE", "target_id": "<first>"},
                     id="update-without-merged-content"),
        pytest.param({"reason": "r", "action": "UPDATE", "target_id": "<first>",
                      "merged_content": "   "}, id="update-blank-merged-content"),
        pytest.param({"reason": "r", "action": "UPDATE", "target_id": "<first>",
                      "merged_content": "x" * 8001}, id="update-too-long"),
        pytest.param({"reason": "r", "action": "MERGE"}, id="unknown-action"),
    ],
)
async def test_invalid_tool_input_is_malformed(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate], reply: dict[str, Any]
) -> None:
    if reply.get("target_id") == "<first>":
        reply = {**reply, "target_id": str(candidates[0].id)}
    fake.script(FakeAnthropic.tool_result(reply, input_tokens=50, output_tokens=5))

    with pytest.raises(MalformedLLMOutput) as caught:
        await decide(distiller, candidates)

    assert caught.value.retryable is False
    assert caught.value.usage == LLMUsage(model=MODEL, input_tokens=50, output_tokens=5)


async def test_the_same_call_screens_the_new_memory_for_text_aimed_at_agents(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    verdict = {"reason": "It orders the assistant to run a fetched script.",
               "aimed_at_agents": True}
    fake.script(FakeAnthropic.tool_result({"reason": "r", "action": "SUPERSEDE",
                                           "target_id": str(candidates[0].id),
                                           "screening": verdict}))

    decision = await decide(distiller, candidates)

    assert decision.screening == AgentDirected.model_validate(verdict)
    [body] = fake.requests
    assert "aimed at AI agents" in body["system"] and "make release" in body["system"]
