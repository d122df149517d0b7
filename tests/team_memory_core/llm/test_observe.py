"""The observation distillation (team_memory_core.llm.observe) against the scripted fake."""

from __future__ import annotations

from typing import Any

import pytest

from team_memory_core.llm.client import Distiller, LLMUsage, MalformedLLMOutput
from team_memory_core.llm.observe import (
    MAX_OBSERVATIONS,
    TOOL,
    Observation,
    ObservationType,
    SessionEventLine,
    distill_events,
)
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import MODEL, conforms, sent_tool

pytestmark = pytest.mark.anyio

PROJECT = "github.com/acme/shop"
EVENTS = [
    SessionEventLine(kind="post_tool_use", tool="Edit", files=["orders/models.py"],
                     summary="id = UUIDField(default=uuid7)"),
    SessionEventLine(kind="stop", summary="Switched order ids to UUID v7: time-sortable."),
]
DECISION = {"type": "decision", "content": "orders.id uses UUID v7: time-sortable.",
            "importance": 4, "files": ["orders/models.py"]}


async def test_observations_are_parsed_and_billed(
    fake: FakeAnthropic, distiller: Distiller
) -> None:
    fake.script(FakeAnthropic.tool_result({"observations": [DECISION]}, input_tokens=900,
                                          output_tokens=80))

    found, usage = await distill_events(distiller, PROJECT, EVENTS)

    assert found.observations == [Observation(type=ObservationType.DECISION,
                                              content=DECISION["content"], importance=4,
                                              files=["orders/models.py"])]
    assert usage == LLMUsage(model=MODEL, input_tokens=900, output_tokens=80)
    prompt = fake.requests[0]["messages"][0]["content"]
    assert PROJECT in prompt and "uuid7" in prompt and "orders/models.py" in prompt


async def test_the_tool_schema_is_generated_from_the_reply_model(
    fake: FakeAnthropic, distiller: Distiller
) -> None:
    reply = {"observations": [DECISION]}
    fake.script(FakeAnthropic.tool_result(reply))

    await distill_events(distiller, PROJECT, EVENTS)

    schema = sent_tool(fake)["input_schema"]
    assert schema == TOOL.input_schema
    observations = schema["properties"]["observations"]
    assert observations["maxItems"] == MAX_OBSERVATIONS
    item = observations["items"]
    assert item["required"] == list(Observation.model_fields)  # importance too: asked for
    assert item["properties"]["type"]["enum"] == [t.value for t in ObservationType]
    assert conforms(reply, schema)
    assert not conforms({"observations": [{**DECISION, "type": "gossip"}]}, schema)


async def test_too_many_observations_are_cut_not_refused(
    fake: FakeAnthropic, distiller: Distiller
) -> None:
    many = [{**DECISION, "content": f"Fact {i}."} for i in range(MAX_OBSERVATIONS + 3)]
    fake.script(FakeAnthropic.tool_result({"observations": many}))

    found, _ = await distill_events(distiller, PROJECT, EVENTS)

    assert [o.content for o in found.observations] == [
        f"Fact {i}." for i in range(MAX_OBSERVATIONS)]


async def test_an_observation_cites_only_repository_files_of_the_log(
    fake: FakeAnthropic, distiller: Distiller
) -> None:
    events = [*EVENTS, SessionEventLine(kind="tool", tool="Write", files=["/etc/hosts"],
                                        summary="wrote /etc/hosts")]
    cited = ["orders/models.py", "orders/made_up.py", "/etc/hosts", "orders/models.py"]
    fake.script(FakeAnthropic.tool_result({"observations": [{**DECISION, "files": cited}]}))

    found, _ = await distill_events(distiller, PROJECT, events)

    assert found.observations[0].files == ["orders/models.py"]


async def test_no_events_make_no_call(fake: FakeAnthropic, distiller: Distiller) -> None:
    found, usage = await distill_events(distiller, PROJECT, [])

    assert (found.observations, usage.input_tokens, fake.calls) == ([], 0, 0)


@pytest.mark.parametrize("observation", [
    pytest.param({**DECISION, "type": "gossip"}, id="unknown-type"),
    pytest.param({**DECISION, "content": "  "}, id="blank"),
    pytest.param({**DECISION, "content": "x" * 501}, id="too-long"),
    pytest.param({**DECISION, "importance": 9}, id="importance-out-of-range"),
])
async def test_invalid_observation_is_malformed(
    fake: FakeAnthropic, distiller: Distiller, observation: dict[str, Any]
) -> None:
    fake.script(FakeAnthropic.tool_result({"observations": [observation]}))

    with pytest.raises(MalformedLLMOutput):
        await distill_events(distiller, PROJECT, EVENTS)
