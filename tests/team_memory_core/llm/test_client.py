"""The transport (team_memory_core.llm.client): one forced tool call per judgment, its usage,
and how API failures become LLMUnavailable or MalformedLLMOutput. Driven through the ingest
task, the real anthropic client and the scripted fake Messages API on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

import pytest

from team_memory_core.llm.client import Distiller, LLMUnavailable, LLMUsage, MalformedLLMOutput
from team_memory_core.llm.ingest import Candidate, IngestDecision, decide_ingest
from team_memory_core.settings import Settings
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import MODEL

pytestmark = pytest.mark.anyio

CANDIDATES = [Candidate(id=uuid4(), content="We use React for the frontend.",
                        category="architecture", similarity=0.91)]


async def decide(client: Distiller) -> IngestDecision:
    decision, _ = await decide_ingest(client, "We moved to Svelte.", "architecture", CANDIDATES)
    return decision


async def test_one_forced_call_with_the_model_and_key(
    fake: FakeAnthropic, distiller: Distiller
) -> None:
    fake.script(FakeAnthropic.tool_result({"reason": "r", "action": "ADD"},
                                          input_tokens=321, output_tokens=17))

    _, usage = await decide_ingest(distiller, "x", "architecture", CANDIDATES)

    [body] = fake.requests
    assert body["model"] == MODEL
    assert body["tool_choice"] == {"type": "tool", "name": body["tools"][0]["name"]}
    assert fake.api_keys == ["sk-test"]
    assert usage == LLMUsage(model=MODEL, input_tokens=321, output_tokens=17)


async def test_text_only_reply_is_malformed_and_billed(
    fake: FakeAnthropic, distiller: Distiller
) -> None:
    fake.script(FakeAnthropic.text("I think you should ADD it.", input_tokens=50,
                                   output_tokens=5))

    with pytest.raises(MalformedLLMOutput, match="no record_ingest_decision tool_use") as caught:
        await decide(distiller)

    assert caught.value.retryable is False
    assert caught.value.usage == LLMUsage(model=MODEL, input_tokens=50, output_tokens=5)


async def test_reply_cut_at_max_tokens_is_malformed(
    fake: FakeAnthropic, distiller: Distiller
) -> None:
    reply = {"reason": "r", "action": "UPDATE", "target_id": str(CANDIDATES[0].id),
             "merged_content": "We use React for the fro"}
    fake.script(FakeAnthropic.tool_result(reply, stop_reason="max_tokens"))

    with pytest.raises(MalformedLLMOutput, match="max_tokens"):
        await decide(distiller)


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
    fake: FakeAnthropic, distiller: Distiller, status: int, error_type: str, retryable: bool
) -> None:
    fake.script(FakeAnthropic.error(status, error_type, "nope"))

    with pytest.raises(LLMUnavailable) as caught:
        await decide(distiller)

    assert (caught.value.status_code, caught.value.retryable) == (status, retryable)
    assert fake.calls == 1, "the SDK must not retry on its own"


async def test_retry_after_is_passed_on(fake: FakeAnthropic, distiller: Distiller) -> None:
    fake.script(
        FakeAnthropic.error(429, "rate_limit_error", "slow down", headers={"retry-after": "7"})
    )

    with pytest.raises(LLMUnavailable) as caught:
        await decide(distiller)

    assert caught.value.retry_after_s == 7.0


async def test_empty_script_fails_fast(fake: FakeAnthropic, distiller: Distiller) -> None:
    with pytest.raises(LLMUnavailable, match="no scripted response"):
        await decide(distiller)


async def test_timeout_is_retryable(fake: FakeAnthropic) -> None:
    fake.script(FakeAnthropic.delay(3.0, FakeAnthropic.tool_result({"action": "ADD"})))
    started = time.monotonic()

    async with Distiller(api_key="k", model=MODEL, base_url=fake.base_url, timeout_s=0.5) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await decide(client)

    assert caught.value.retryable is True
    assert time.monotonic() - started < 2.5


async def test_connection_refused_is_retryable() -> None:
    with FakeAnthropic() as gone:
        base_url = gone.base_url

    async with Distiller(api_key="k", model=MODEL, base_url=base_url, timeout_s=2) as client:
        with pytest.raises(LLMUnavailable) as caught:
            await decide(client)

    assert caught.value.retryable is True
    assert caught.value.status_code is None


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
        await decide(distiller)
    assert fake.requests[0]["model"] == "claude-test"
    assert fake.api_keys == ["sk-from-env"]


async def test_max_content_chars_comes_from_settings(
    monkeypatch: pytest.MonkeyPatch, fake: FakeAnthropic
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
    monkeypatch.setenv("TEAM_MEMORY_MAX_CONTENT_CHARS", "100")
    distiller = Distiller.from_settings(Settings())
    assert distiller is not None
    reply: dict[str, Any] = {"reason": "r", "action": "UPDATE",
                             "target_id": str(CANDIDATES[0].id), "merged_content": "x" * 101}
    fake.script(FakeAnthropic.tool_result(reply))
    async with distiller:
        with pytest.raises(MalformedLLMOutput, match="over 100"):
            await decide(distiller)
