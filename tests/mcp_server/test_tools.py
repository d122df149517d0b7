"""The MCP tools through the SDK's in-process client, against real PostgreSQL and Temporal."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from mcp import Client

from team_memory_core.models.memories import MemoryStatus
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Stack

pytestmark = pytest.mark.anyio

DECISIONS = {
    "We use UUID v7 for all primary keys in PostgreSQL": "Which identifier format do new "
    "database rows get?",
    "Production deploys only happen on Tuesdays and Thursdays": "When are we allowed to ship "
    "releases?",
    "The payment service retries failed webhooks with exponential backoff, five attempts at "
    "most": "How are failing callbacks from the billing provider handled?",
}


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


async def count_rows(stack: Stack) -> int:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        return int(await conn.fetchval("SELECT count(*) FROM memories"))


async def test_save_then_search_finds_each_by_paraphrase(running: Stack) -> None:
    async with Client(running.server) as client:
        ids = {}
        for content in DECISIONS:
            saved = await call(client, "save_memory", content=content, category="architecture",
                               importance=4)
            ids[content] = uuid.UUID(saved["id"])
        for memory_id in ids.values():
            assert await running.wait_status(memory_id) is MemoryStatus.ACTIVE
        for content, paraphrase in DECISIONS.items():
            found = await call(client, "search_memory", query=paraphrase, limit=1)
            assert found["results"][0]["id"] == str(ids[content]), paraphrase


async def test_search_returns_compact_index_and_get_returns_full_text(running: Stack) -> None:
    long_text = "Billing rule: invoices are finalised on the first business day. " * 8
    async with Client(running.server) as client:
        saved = await call(client, "save_memory", content=long_text, category="business_rule")
        hit = (await call(client, "search_memory", query="when are invoices finalised"))[
            "results"][0]
        assert hit["id"] == saved["id"]
        assert len(hit["text"]) <= 160 < len(long_text)
        assert hit["tokens"] >= len(long_text) // 5  # the text is cut: get_memory has it all
        assert set(hit) == {"id", "category", "text", "age", "tokens", "author", "origin",
                            "scope"}
        short = await call(client, "save_memory", content="Invoices are in EUR", importance=3)
        found = await call(client, "search_memory", query="invoice currency", limit=1)
        assert found["results"] == [{"id": short["id"], "category": "general",
                                     "text": "Invoices are in EUR", "age": "just now",
                                     "importance": 3, "author": "default", "origin": "tool",
                                     "scope": "project"}]
        assert found["project"] == running.settings.project
        assert hit["age"] == "just now"
        full = await call(client, "get_memory", id=saved["id"])
        assert full["content"] == long_text
        both = await call(client, "get_memories", ids=[saved["id"]])
        assert [m["content"] for m in both["memories"]] == [long_text]


async def test_saving_identical_content_twice_is_idempotent(running: Stack) -> None:
    async with Client(running.server) as client:
        first = await call(client, "save_memory", content="Use ruff for linting")
        await running.wait_status(uuid.UUID(first["id"]))
        second = await call(client, "save_memory", content="use ruff for linting.  ")
    assert second["id"] == first["id"]
    assert second["already_saved"] is True
    async with Client(running.server) as client:
        workflow_id = (await call(client, "memory_status", id=first["id"]))["workflow_id"]
    workflows = [w async for w in running.client.list_workflows(
        f"WorkflowId = '{workflow_id}'")]
    assert len(workflows) == 1
    assert await count_rows(running) == 1


async def test_read_your_writes_before_the_workflow_commits(stack: Stack) -> None:
    """No worker runs: the memory stays pending, yet search finds it by meaning."""
    async with Client(stack.server) as client:
        saved = await call(client, "save_memory", content="Feature flags are managed in "
                           "LaunchDarkly, never in environment variables")
        assert "status" not in saved  # pending, as every fresh save
        found = await call(client, "search_memory", query="where do we toggle experimental "
                           "functionality on and off?")
        status = await call(client, "memory_status", id=saved["id"])
    assert found["results"][0]["id"] == saved["id"]
    assert "status" not in found["results"][0]  # current (pending) memories say nothing
    assert status["status"] == "pending"
    async with stack.worker():
        assert await stack.wait_status(uuid.UUID(saved["id"])) is MemoryStatus.ACTIVE


async def test_near_duplicate_creates_no_new_memory(running: Stack) -> None:
    async with Client(running.server) as client:
        first = await call(client, "save_memory",
                           content="We deploy the API with blue-green deployments on Kubernetes")
        await running.wait_status(uuid.UUID(first["id"]))
        second = await call(client, "save_memory",
                            content="We deploy the API with blue/green deployments on Kubernetes!")
        assert second["id"] != first["id"]
        assert await running.wait_status(uuid.UUID(second["id"])) is MemoryStatus.DUPLICATE
        status = await call(client, "memory_status", id=second["id"])
        found = await call(client, "search_memory", query="how do we deploy the API", limit=5)
    assert status["duplicate_of"] == first["id"]
    assert [e["event"] for e in status["history"]] == ["duplicate"]
    assert [r["id"] for r in found["results"]] == [first["id"]]


async def test_conflicting_statement_is_not_merged_by_local_policy(running: Stack) -> None:
    async with Client(running.server) as client:
        react = await call(client, "save_memory", content="We use React for the frontend")
        await running.wait_status(uuid.UUID(react["id"]))
        svelte = await call(client, "save_memory", content="We use Svelte for the frontend")
        assert await running.wait_status(uuid.UUID(svelte["id"])) is MemoryStatus.ACTIVE
        status = await call(client, "memory_status", id=react["id"])
    assert status["status"] == "active"
    assert status["dedupe_policy"] == "local"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"content": "x", "category": "gossip"}, "unknown category"),
        ({"content": "x", "importance": 9}, "importance"),
        ({"content": "x", "importance": 0}, "importance"),
        ({"content": "   "}, "empty"),
        ({"content": "a\x00b"}, "NUL"),
        ({"content": "y" * 9000}, "limit"),
        ({"content": "x", "tags": ["ok", "not ok!"]}, "tag"),
        ({"content": "x", "tags": [f"t{i}" for i in range(40)]}, "at most"),
        ({"content": "x", "project": "../../etc"}, "project"),
        ({"content": "<private>only a secret</private>"}, "empty"),
        # Nothing a reader would see: zero-width space, non-joiner, joiner, word joiner, BOM.
        ({"content": "\u200b\u200c\u200d\u2060\ufeff"}, "invisible characters"),
        ({"content": "\ufeff"}, "content is empty"),
        ({"content": " \u200b \u00a0\u3000\u2028\ufe0f\u180e "}, "content is empty"),
        ({"content": "<private>a secret</private>\u200b\ufeff"}, "empty once private"),
    ],
)
async def test_invalid_save_is_a_clear_error_and_writes_nothing(
    stack: Stack, arguments: dict[str, Any], message: str
) -> None:
    async with Client(stack.server) as client:
        error = await call_error(client, "save_memory", **arguments)
    assert message in error
    assert await count_rows(stack) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"query": ""}, "empty"),
        ({"query": "\u200b\ufeff"}, "query is empty"),
        ({"query": "q" * 2000}, "longer"),
        ({"query": "x", "limit": 0}, "limit"),
        ({"query": "x", "limit": 500}, "limit"),
        ({"query": "x", "category": "gossip"}, "unknown category"),
    ],
)
async def test_invalid_search_is_a_clear_error(
    stack: Stack, arguments: dict[str, Any], message: str
) -> None:
    async with Client(stack.server) as client:
        assert message in await call_error(client, "search_memory", **arguments)


async def test_forget_hides_the_memory_and_records_why(running: Stack) -> None:
    async with Client(running.server) as client:
        saved = await call(client, "save_memory", content="Staging database is reset nightly")
        await running.wait_status(uuid.UUID(saved["id"]))
        await call(client, "forget_memory", id=saved["id"], reason="no longer true")
        found = await call(client, "search_memory", query="staging database reset")
        error = await call_error(client, "get_memory", id=saved["id"])
        status = await call(client, "memory_status", id=saved["id"])
    assert found["results"] == []
    assert "no memory" in error
    assert status["status"] == "forgotten"
    assert status["history"][-1]["event"] == "forgotten"
    assert status["history"][-1]["reason"] == "no longer true"


async def test_unknown_ids_are_reported_not_crashed(stack: Stack) -> None:
    missing = str(uuid.uuid4())
    async with Client(stack.server) as client:
        assert "no memory" in await call_error(client, "get_memory", id=missing)
        assert "no memory" in await call_error(client, "forget_memory", id=missing, reason="x")
        status = await call(client, "memory_status", id=missing)
    assert status["status"] == "unknown"


async def test_category_and_project_filters(running: Stack) -> None:
    async with Client(running.server) as client:
        bug = await call(client, "save_memory", category="bugfix", project="api",
                         content="Fixed the race in the session cache by taking a lock")
        rule = await call(client, "save_memory", category="business_rule", project="api",
                          content="Sessions of enterprise customers expire after 12 hours")
        other = await call(client, "save_memory", category="bugfix", project="web",
                           content="Fixed the session cookie race in the login page")
        team = await call(client, "save_memory", category="preference", project="*",
                          content="Session handling code must have integration tests")
        for saved in (bug, rule, other, team):
            await running.wait_status(uuid.UUID(saved["id"]))
        in_api = await call(client, "search_memory", query="session", project="api", limit=10)
        bugs = await call(client, "search_memory", query="session", project="api",
                          category="bugfix", limit=10)
    assert {r["id"] for r in in_api["results"]} == {bug["id"], rule["id"], team["id"]}
    assert [r["id"] for r in bugs["results"]] == [bug["id"]]


async def test_recent_summary_and_memory_resources(running: Stack) -> None:
    async with Client(running.server) as client:
        important = await call(client, "save_memory", importance=4,
                               content="All services log in JSON with a trace id")
        await call(client, "save_memory", importance=1, content="The office plant is a fern")
        summary = await client.read_resource("memory://recent_summary")
        one = await client.read_resource(f"memory://memories/{important['id']}")
    summary_text = summary.contents[0].text  # type: ignore[union-attr]
    assert "JSON with a trace id" in summary_text
    assert "fern" not in summary_text
    assert important["id"] in one.contents[0].text  # type: ignore[union-attr]
