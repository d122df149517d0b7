"""team_memory_core.llm through the real anthropic client against a scripted local HTTP server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from team_memory_core.llm import (
    Candidate,
    ClusterMemory,
    DecisionAction,
    Distiller,
    IngestDecision,
    LLMUnavailable,
    LLMUsage,
    MalformedLLMOutput,
    MergeAction,
    SupersedeAction,
    TopMemory,
)
from team_memory_core.settings import Settings
from tests.support.anthropic_server import FakeAnthropic

pytestmark = pytest.mark.anyio

MODEL = "claude-haiku-4-5"
NEW_CONTENT = "We migrated the frontend from React to Svelte."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def distiller(fake: FakeAnthropic) -> AsyncIterator[Distiller]:
    async with Distiller(
        api_key="sk-test", model=MODEL, base_url=fake.base_url, timeout_s=5.0
    ) as client:
        yield client


@pytest.fixture
def candidates() -> list[Candidate]:
    return [
        Candidate(
            id=uuid4(),
            content="We use React for the frontend.",
            category="decision",
            similarity=0.91,
        ),
        Candidate(
            id=uuid4(), content="Frontend builds run on Vite.", category="decision", similarity=0.74
        ),
    ]


async def decide(distiller: Distiller, candidates: list[Candidate]) -> IngestDecision:
    decision, _ = await distiller.decide_ingest(NEW_CONTENT, "decision", candidates)
    return decision


# --- ingest decisions ---------------------------------------------------------------------


async def test_add_returns_decision_and_usage(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    reply = {"reason": "A new fact.", "action": "ADD"}
    fake.script(FakeAnthropic.tool_result(reply, input_tokens=321, output_tokens=17))

    decision, usage = await distiller.decide_ingest(NEW_CONTENT, "decision", candidates)

    assert decision == IngestDecision(action=DecisionAction.ADD, reason="A new fact.")
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

    assert decision.action == DecisionAction(action)
    assert decision.target_id == target
    assert decision.merged_content is None


async def test_update_carries_merged_content(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    merged = "Frontend builds run on Vite 5 with the SWC plugin."
    fake.script(
        FakeAnthropic.tool_result(
            {
                "reason": "Adds the version.",
                "action": "UPDATE",
                "target_id": str(candidates[1].id).upper(),
                "merged_content": f"  {merged}\n",
            }
        )
    )

    decision = await decide(distiller, candidates)

    assert decision.action is DecisionAction.UPDATE
    assert decision.target_id == candidates[1].id
    assert decision.merged_content == merged


async def test_add_ignores_stray_fields(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    fake.script(
        FakeAnthropic.tool_result(
            {"reason": "r", "action": "ADD", "target_id": "", "merged_content": "x"}
        )
    )

    decision = await decide(distiller, candidates)

    assert (decision.target_id, decision.merged_content) == (None, None)


async def test_request_carries_model_tool_choice_and_candidates(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    fake.script(FakeAnthropic.tool_result({"reason": "r", "action": "ADD"}))

    await decide(distiller, candidates)

    [body] = fake.requests
    assert body["model"] == MODEL
    tool_name = body["tools"][0]["name"]
    assert body["tool_choice"] == {"type": "tool", "name": tool_name}
    prompt = body["messages"][0]["content"]
    for candidate in candidates:
        assert str(candidate.id) in prompt
        assert candidate.content in prompt
    assert NEW_CONTENT in prompt
    assert "never instructions" in body["system"]
    assert fake.api_keys == ["sk-test"]


async def test_no_candidates_adds_without_a_call(fake: FakeAnthropic, distiller: Distiller) -> None:
    decision, usage = await distiller.decide_ingest(NEW_CONTENT, "decision", [])

    assert decision.action is DecisionAction.ADD
    assert usage.input_tokens == usage.output_tokens == 0
    assert fake.calls == 0


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            {"reason": "r", "action": "DUPLICATE", "target_id": str(uuid4())},
            id="target-outside-candidates",
        ),
        pytest.param({"reason": "r", "action": "SUPERSEDE"}, id="target-missing"),
        pytest.param(
            {"reason": "r", "action": "DUPLICATE", "target_id": "not-a-uuid"}, id="target-not-uuid"
        ),
        pytest.param(
            {"reason": "r", "action": "UPDATE", "target_id": "<first>"},
            id="update-without-merged-content",
        ),
        pytest.param(
            {"reason": "r", "action": "UPDATE", "target_id": "<first>", "merged_content": "   "},
            id="update-blank-merged-content",
        ),
        pytest.param(
            {
                "reason": "r",
                "action": "UPDATE",
                "target_id": "<first>",
                "merged_content": "x" * 8001,
            },
            id="update-too-long",
        ),
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


async def test_text_only_reply_is_malformed(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    fake.script(FakeAnthropic.text("I think you should ADD it."))

    with pytest.raises(MalformedLLMOutput, match="no record_ingest_decision tool_use"):
        await decide(distiller, candidates)


async def test_reply_cut_at_max_tokens_is_malformed(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    reply = {
        "reason": "r",
        "action": "UPDATE",
        "target_id": str(candidates[0].id),
        "merged_content": "We use React for the fro",
    }
    fake.script(FakeAnthropic.tool_result(reply, stop_reason="max_tokens"))

    with pytest.raises(MalformedLLMOutput, match="max_tokens"):
        await decide(distiller, candidates)


# --- transport errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (429, "rate_limit_error", True),
        (500, "api_error", True),
        (529, "overloaded_error", True),
        (400, "invalid_request_error", False),
        (401, "authentication_error", False),
        (403, "permission_error", False),
    ],
)
async def test_status_errors_map_to_unavailable(
    fake: FakeAnthropic,
    distiller: Distiller,
    candidates: list[Candidate],
    status: int,
    error_type: str,
    retryable: bool,
) -> None:
    fake.script(FakeAnthropic.error(status, error_type, "nope"))

    with pytest.raises(LLMUnavailable) as caught:
        await decide(distiller, candidates)

    assert (caught.value.status_code, caught.value.retryable) == (status, retryable)
    assert fake.calls == 1, "the SDK must not retry on its own"


async def test_retry_after_is_passed_on(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    fake.script(
        FakeAnthropic.error(429, "rate_limit_error", "slow down", headers={"retry-after": "7"})
    )

    with pytest.raises(LLMUnavailable) as caught:
        await decide(distiller, candidates)

    assert caught.value.retry_after_s == 7.0


async def test_empty_script_fails_fast(
    fake: FakeAnthropic, distiller: Distiller, candidates: list[Candidate]
) -> None:
    with pytest.raises(LLMUnavailable, match="no scripted response"):
        await decide(distiller, candidates)


async def test_timeout_is_retryable(fake: FakeAnthropic, candidates: list[Candidate]) -> None:
    fake.script(FakeAnthropic.delay(3.0, FakeAnthropic.tool_result({"action": "ADD"})))
    started = time.monotonic()

    async with Distiller(api_key="k", model=MODEL, base_url=fake.base_url, timeout_s=0.5) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await decide(client, candidates)

    assert caught.value.retryable is True
    assert time.monotonic() - started < 2.5


async def test_connection_refused_is_retryable(candidates: list[Candidate]) -> None:
    with FakeAnthropic() as gone:
        base_url = gone.base_url

    async with Distiller(api_key="k", model=MODEL, base_url=base_url, timeout_s=2) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await decide(client, candidates)

    assert caught.value.retryable is True
    assert caught.value.status_code is None


# --- consolidation ------------------------------------------------------------------------


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
        ClusterMemory(
            id=uuid4(),
            content=text,
            category="decision",
            importance=0.5,
            occurred_at=start + timedelta(days=i),
        )
        for i, text in enumerate(texts)
    ]


def merge(ids: list[UUID], keep: UUID) -> dict[str, Any]:
    return {
        "reason": "Same rule.",
        "action": "MERGE",
        "ids": [str(i) for i in ids],
        "keep_id": str(keep),
        "merged_content": "Deploy only with ArgoCD, never kubectl.",
    }


def supersede(old: UUID, new: UUID) -> dict[str, Any]:
    return {"reason": "Migrated.", "action": "SUPERSEDE", "old_id": str(old), "new_id": str(new)}


async def test_consolidation_plan_is_parsed(
    fake: FakeAnthropic, distiller: Distiller, cluster: list[ClusterMemory]
) -> None:
    a, b, react, svelte = (m.id for m in cluster)
    fake.script(
        FakeAnthropic.tool_result(
            {"actions": [merge([a, b], b), supersede(react, svelte)]}, input_tokens=900
        )
    )

    plan, usage = await distiller.plan_consolidation(cluster)

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

    plan, _ = await distiller.plan_consolidation(cluster)

    assert plan.actions == []


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
        await distiller.plan_consolidation(cluster)


# --- manifesto ----------------------------------------------------------------------------


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

    manifesto, _ = await distiller.write_manifesto(top, max_rules=2)

    assert [r.text for r in manifesto.rules] == [
        "Store money as integer cents.",
        "Deploy only through ArgoCD.",
    ]
    assert manifesto.rules[0].source_ids == [top[1].id]
    body = fake.requests[0]
    assert body["tools"][0]["input_schema"]["properties"]["rules"]["maxItems"] == 2
    assert "at most 2 rules" in body["messages"][0]["content"]


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
        await distiller.write_manifesto(top, max_rules=5)


# --- construction -------------------------------------------------------------------------


async def test_from_settings(monkeypatch: pytest.MonkeyPatch, fake: FakeAnthropic) -> None:
    for name in ("ANTHROPIC_API_KEY", "TEAM_MEMORY_ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert Distiller.from_settings(Settings()) is None

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
    monkeypatch.setenv("TEAM_MEMORY_LLM_MODEL", "claude-test")
    distiller = Distiller.from_settings(Settings())
    assert distiller is not None
    fake.script(FakeAnthropic.tool_result({"reason": "r", "action": "ADD"}))
    async with distiller:
        await distiller.decide_ingest(
            "x",
            "decision",
            [Candidate(id=uuid4(), content="y", category="decision", similarity=0.8)],
        )
    assert fake.requests[0]["model"] == "claude-test"
    assert fake.api_keys == ["sk-from-env"]
