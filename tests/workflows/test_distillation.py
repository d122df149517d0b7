"""Ingest decisions by Claude Haiku, end to end: MCP save -> IngestMemory -> the real anthropic
client -> a scripted fake Messages API on 127.0.0.1 -> commit with history events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from mcp import Client

from mcp_server.errors import NotFound
from team_memory_core.llm.client import Distiller
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Stack
from tests.mcp_server.test_tools import call
from tests.support.anthropic_server import FakeAnthropic, Reply
from tests.support.llm import MODEL

pytestmark = pytest.mark.anyio

# Retry-After on scripted errors keeps Temporal's retries quick (and tests the hint).
QUICK = {"retry-after": "0.1"}


@pytest.fixture
async def haiku(stack: Stack, distiller: Distiller) -> AsyncIterator[Stack]:
    """The stack with a worker whose Distiller talks to the fake Anthropic API."""
    async with stack.worker(distiller=distiller):
        yield stack


async def events(stack: Stack, memory_id: uuid.UUID) -> list[asyncpg.Record]:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT * FROM memory_events WHERE memory_id = $1 ORDER BY id", memory_id)
        return rows


async def row(stack: Stack, memory_id: uuid.UUID) -> asyncpg.Record:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        found = await conn.fetchrow("SELECT * FROM memories WHERE id = $1", memory_id)
    assert found is not None
    return found


async def first(haiku: Stack, content: str) -> uuid.UUID:
    """The first memory of a project: no neighbours, so no decision to ask for (its injection
    screening is answered as benign by the fake's fixture)."""
    memory_id = await haiku.service.save(haiku.principal, content, category="architecture")
    assert await haiku.wait_status(memory_id.id) is MemoryStatus.ACTIVE
    return memory_id.id


async def second(haiku: Stack, fake: FakeAnthropic, content: str, *script: Reply) -> uuid.UUID:
    fake.script(*script)
    saved = await haiku.service.save(haiku.principal, content, category="architecture")
    await haiku.wait_status(saved.id)
    return saved.id


def decisions(fake: FakeAnthropic) -> list[dict[str, Any]]:
    """The requests for ingest decisions (the screenings of first memories left out)."""
    return [c.body for c in fake.conversations if c.forced_tool == "record_ingest_decision"]


def decision(**tool_input: Any) -> Reply:
    return FakeAnthropic.tool_result(tool_input, input_tokens=321, output_tokens=45)


async def test_add_keeps_both_and_records_the_model(haiku: Stack, fake: FakeAnthropic) -> None:
    old = await first(haiku, "Staging runs Postgres 15")
    new = await second(haiku, fake, "Production runs Postgres 16",
                       decision(action="ADD", reason="Different environment."))
    assert (await row(haiku, new))["status"] == "active"
    assert (await row(haiku, old))["status"] == "active"
    assert len(decisions(fake)) == 1
    prompt = decisions(fake)[0]["messages"][0]["content"]
    assert "Staging runs Postgres 15" in prompt and str(old) in prompt
    assert decisions(fake)[0]["model"] == MODEL
    [added] = await events(haiku, new)
    assert (added["event"], added["policy"], added["model"]) == ("added", "haiku", MODEL)
    assert (added["input_tokens"], added["output_tokens"]) == (321, 45)
    assert added["reason"] == "Different environment."


async def test_duplicate_points_at_the_existing_memory(haiku: Stack, fake: FakeAnthropic) -> None:
    old = await first(haiku, "JavaScript dependencies are installed with pnpm")
    new = await second(haiku, fake, "We install JS packages with pnpm",
                       decision(action="DUPLICATE", target_id=str(old), reason="Same rule."))
    record = await row(haiku, new)
    assert (record["status"], record["duplicate_of"]) == ("duplicate", old)
    assert [e["event"] for e in await events(haiku, new)] == ["duplicate"]
    hits = await haiku.service.search(haiku.principal, "package manager for JavaScript")
    assert [h.id for h in hits] == [old]


async def test_update_merges_text_with_provenance(haiku: Stack, fake: FakeAnthropic) -> None:
    old = await first(haiku, "API requests time out after 30 seconds")
    merged = "API requests time out after 30 seconds; uploads get 120 seconds"
    new = await second(haiku, fake, "Uploads get a 120 second timeout instead",
                       decision(action="UPDATE", target_id=str(old), merged_content=merged,
                                reason="Adds an exception."))
    kept = await row(haiku, old)
    assert kept["content"] == merged and kept["origin"] == "merge"
    assert list(kept["merged_from"]) == [new]
    assert (await row(haiku, new))["duplicate_of"] == old
    merge = (await events(haiku, old))[-1]
    assert merge["event"] == "merged"
    assert merge["before_text"] == "API requests time out after 30 seconds"
    assert merge["after_text"] == merged
    assert (merge["model"], merge["input_tokens"]) == (MODEL, 321)
    # the merged text is re-embedded: a search for the new detail finds the kept memory
    hits = await haiku.service.search(haiku.principal, "upload timeout", limit=1)
    assert hits[0].id == old


async def test_react_then_svelte_supersedes(haiku: Stack, fake: FakeAnthropic) -> None:
    """The acceptance check, through the MCP tools."""
    async with Client(haiku.server) as client:
        react = uuid.UUID((await call(client, "save_memory",
                                      content="We use React for the frontend",
                                      category="architecture"))["id"])
        assert await haiku.wait_status(react) is MemoryStatus.ACTIVE
        fake.script(decision(action="SUPERSEDE", target_id=str(react),
                             reason="The frontend moved to Svelte."))
        svelte = uuid.UUID((await call(client, "save_memory",
                                       content="We migrated the frontend to Svelte",
                                       category="architecture"))["id"])
        assert await haiku.wait_status(svelte) is MemoryStatus.ACTIVE
        assert await haiku.wait_status(react) is MemoryStatus.SUPERSEDED

        found = await call(client, "search_memory", query="Which frontend framework do we use?")
        assert [r["id"] for r in found["results"]] == [str(svelte)]
        history = await call(client, "search_memory", query="frontend framework",
                             include_history=True)
        assert {r["id"] for r in history["results"]} == {str(react), str(svelte)}

        old = await call(client, "get_memory", id=str(react), include_history=True)
        assert old["superseded_by"] == str(svelte)
        assert old["valid_to"] is not None
        refused = await client.call_tool("get_memory", {"id": str(react)})
        assert refused.is_error
        status = await call(client, "memory_status", id=str(react))
        assert [e["event"] for e in status["history"]] == ["added", "superseded"]
    with pytest.raises(NotFound, match="include_history"):
        await haiku.service.get(haiku.principal, react)


async def test_rate_limit_is_retried_and_committed_once(haiku: Stack, fake: FakeAnthropic) -> None:
    await first(haiku, "Feature flags live in LaunchDarkly")
    new = await second(haiku, fake, "Feature flags are evaluated server-side",
                       FakeAnthropic.error(429, "rate_limit_error", "slow down", headers=QUICK),
                       decision(action="ADD", reason="Separate fact."))
    assert len(decisions(fake)) == 2
    assert [e["event"] for e in await events(haiku, new)] == ["added"]
    assert (await row(haiku, new))["needs_review"] is False


async def test_outage_keeps_the_memory_with_an_event(haiku: Stack, fake: FakeAnthropic) -> None:
    await first(haiku, "Emails are sent through Postmark")
    overloaded = FakeAnthropic.error(529, "overloaded_error", "Overloaded", headers=QUICK)
    new = await second(haiku, fake, "Transactional email uses the Postmark API",
                       *[overloaded] * 5)
    assert len(decisions(fake)) == 5  # DECISION_RETRY's attempts, then the fallback
    record = await row(haiku, new)
    assert (record["status"], record["needs_review"]) == ("active", True)
    [kept] = await events(haiku, new)
    assert kept["event"] == "kept_without_decision"
    assert "LLMUnavailable" in kept["reason"] and "529" in kept["reason"]


async def test_malformed_reply_keeps_the_memory(haiku: Stack, fake: FakeAnthropic) -> None:
    old = await first(haiku, "Logs are shipped to Loki")
    new = await second(haiku, fake, "Application logs go to Grafana Loki",
                       decision(action="DUPLICATE", target_id=str(uuid.uuid4()),
                                reason="An id the model was never shown."))
    assert len(decisions(fake)) == 1  # not retried: the same prompt gets the same answer
    record = await row(haiku, new)
    assert (record["status"], record["needs_review"]) == ("active", True)
    [kept] = await events(haiku, new)
    assert kept["event"] == "kept_without_decision"
    assert "MalformedLLMOutput" in kept["reason"]
    assert (await row(haiku, old))["status"] == "active"


@pytest.mark.parametrize(("kind", "secret", "text"), [
    ("anthropic_key", "sk-ant-api03-" + "Zq8" * 16, "Anthropic key for CI: {secret}"),
    ("github_token", "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "deploy with {secret}"),
    ("url_password", "hunter2correcthorse", "DB is postgres://app:{secret}@db.internal/app"),
    ("env_assignment", "Xk29fjQ0pLmZ8rT3", "set STRIPE_WEBHOOK_SECRET={secret} in .env"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lg"
     "\n-----END RSA PRIVATE KEY-----", "the signing key is {secret}"),
])
async def test_secrets_never_reach_storage_or_the_model(
    haiku: Stack, fake: FakeAnthropic, kind: str, secret: str, text: str
) -> None:
    await first(haiku, "Secrets are kept in Vault, never in the repository")
    fake.script(decision(action="ADD", reason="new"))
    saved = await haiku.service.save(haiku.principal, text.format(secret=secret) + " <private>"
                                     "internal only</private>", category="architecture")
    await haiku.wait_status(saved.id)
    stored = (await row(haiku, saved.id))["content"]
    assert secret not in stored and "internal only" not in stored
    assert kind in saved.redacted
    assert f"[REDACTED:{kind}]" in stored
    for request in fake.requests:
        assert secret not in str(request)
    assert [e["event"] for e in await events(haiku, saved.id)] == ["redacted", "added"]
