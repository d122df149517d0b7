"""The scripted Messages API, read by the real `anthropic` client: JSON and SSE streaming."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam, ToolParam

from tests.support.anthropic_server import Conversation, FakeAnthropic, Reply

TOOL: ToolParam = {"name": "lookup", "description": "Look a thing up.",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
LONG_INPUT = {"q": "which primary key type do we use for the payments tables?", "limit": 5}


def client(fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-test", base_url=fake.base_url, max_retries=0,
                               timeout=10)


def ask(fake: FakeAnthropic, text: str, **options: object) -> anthropic.types.Message:
    return client(fake).messages.create(  # type: ignore[call-overload, no-any-return]
        model="claude-test", max_tokens=100, tools=[TOOL],
        messages=[{"role": "user", "content": text}], **options)


def test_streaming_delivers_text_and_tool_input_in_pieces(fake: FakeAnthropic) -> None:
    fake.when(lambda c: "call it" in c.last_user_text,
              FakeAnthropic.tool_result(LONG_INPUT, name="lookup", output_tokens=33))
    fake.when(lambda c: True, FakeAnthropic.text("three words here"))

    with client(fake).messages.stream(model="claude-test", max_tokens=100, tools=[TOOL],
                                      messages=[{"role": "user", "content": "call it"}]) as s:
        kinds = [event.type for event in s]
        message = s.get_final_message()
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 33
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "lookup" and block.input == LONG_INPUT
    assert kinds.count("input_json") > 1  # the input arrived in several input_json_delta

    with client(fake).messages.stream(model="claude-test", max_tokens=100,
                                      messages=[{"role": "user", "content": "hi"}]) as s:
        texts = [event.text for event in s if event.type == "text"]
        message = s.get_final_message()
    assert texts == ["three", " words", " here"]
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == "three words here"


def test_raw_stream_has_the_events_of_the_real_api(fake: FakeAnthropic) -> None:
    fake.fallback = FakeAnthropic.text("ok")
    response = httpx.post(f"{fake.base_url}/v1/messages", timeout=10, json={
        "model": "m", "max_tokens": 5, "stream": True,
        "messages": [{"role": "user", "content": "x"}]})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("event: ") for line in response.text.splitlines()
              if line.startswith("event: ")]
    assert events == ["message_start", "ping", "content_block_start", "content_block_delta",
                      "content_block_stop", "message_delta", "message_stop"]


def test_rules_come_before_the_queue_and_see_the_conversation(fake: FakeAnthropic) -> None:
    seen: list[Conversation] = []

    def echo(conversation: Conversation) -> Reply:
        seen.append(conversation)
        return FakeAnthropic.text(f"results: {conversation.tool_result_text('lookup')}")

    fake.when(lambda c: bool(c.tool_results), echo)
    fake.script(FakeAnthropic.tool_result({"q": "x"}, name="lookup"))

    first = ask(fake, "start")
    assert first.content[0].type == "tool_use"
    said: Any = [block.model_dump() for block in first.content]
    conversation: list[MessageParam] = [
        {"role": "user", "content": "start"},
        {"role": "assistant", "content": said},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id,
                                      "content": [{"type": "text", "text": "found 42"}]}]}]
    second = client(fake).messages.create(model="claude-test", max_tokens=100, tools=[TOOL],
                                          messages=conversation)
    assert second.content[0].type == "text" and second.content[0].text == "results: found 42"
    assert seen[0].tool_names == ["lookup"] and seen[0].model == "claude-test"
    assert fake.pending == 0 and fake.calls == 2


def test_forced_tool_named_by_the_request(fake: FakeAnthropic) -> None:
    fake.when(lambda c: c.forced_tool == "lookup", FakeAnthropic.tool_result({"q": "y"}))
    reply = ask(fake, "go", tool_choice={"type": "tool", "name": "lookup"})
    assert reply.content[0].type == "tool_use" and reply.content[0].name == "lookup"


def test_a_broken_rule_is_a_400_that_names_it(fake: FakeAnthropic) -> None:
    fake.when(lambda c: c.body["missing"], FakeAnthropic.text("never"))
    with pytest.raises(anthropic.BadRequestError, match="a rule failed: KeyError"):
        ask(fake, "x")
    assert fake.errors == ["FakeAnthropic: a rule failed: KeyError: 'missing'"]


def test_nothing_scripted_is_a_500_then_the_fallback(fake: FakeAnthropic) -> None:
    with pytest.raises(anthropic.InternalServerError, match="no scripted response left"):
        ask(fake, "x")
    fake.fallback = FakeAnthropic.text("fallback")
    assert ask(fake, "x").content[0].type == "text"


def test_count_tokens_and_unknown_routes_are_recorded(fake: FakeAnthropic) -> None:
    counted = client(fake).messages.count_tokens(
        model="claude-test", messages=[{"role": "user", "content": "hello " * 40}])
    assert counted.input_tokens > 10
    missing = httpx.get(f"{fake.base_url}/v1/models", headers={"x-api-key": "k"}, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    routes = [(r.method, r.path) for r in fake.exchanges]
    assert routes == [("POST", "/v1/messages/count_tokens"), ("GET", "/v1/models")]
    assert fake.exchanges[0].headers["authorization"] == "Bearer sk-test"
    assert fake.calls == 0  # count_tokens is not a message
