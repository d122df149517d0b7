"""Provenance: every memory records its author (a member), its origin and its scope, and
search results, get_memory, export and import carry them; explain=true takes a search score
apart into parts that sum to it."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import asyncpg
import pytest
from mcp import Client

from mcp_server.transfer import ImportFailed, export_lines, import_items, parse_jsonl
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from tests.conftest import Stack
from tests.mcp_server.conftest import B_OWN, ONLY_A, SHARED, TRUNK, TwoMembers
from tests.mcp_server.test_tools import call

pytestmark = pytest.mark.anyio

PARTS = ("keyword", "vector", "neighbour", "importance", "recency", "freshness")


async def test_search_and_get_say_who_saved_it_how_and_who_sees_it(
    two_members: TwoMembers,
) -> None:
    async with Client(two_members.a.server) as client:
        found = await call(client, "search_memory", query="zebrafish keys, deployment, "
                           "trunk-based development, staging database", limit=10)
        got = await call(client, "get_memories", ids=[two_members.personal_id,
                                                      two_members.b_own_id])
        one = await client.call_tool("get_memory", {"id": two_members.team_id})
    by_id = {r["id"]: r for r in found["results"]}
    expected = {two_members.personal_id: ("default", "tool", "personal"),
                two_members.project_id: ("default", "tool", "project"),
                two_members.team_id: ("default", "tool", "team"),
                two_members.b_own_id: ("bob", "tool", "project")}
    for memory_id, (author, origin, scope) in expected.items():
        hit = by_id[memory_id]
        assert (hit["author"], hit["origin"], hit["scope"]) == (author, origin, scope), hit
    assert [(m["author"], m["scope"]) for m in got["memories"]] == [("default", "personal"),
                                                                    ("bob", "project")]
    # What the model reads: the memory quoted as data, with who saved it, how and who sees it.
    assert 'by="default" via="tool" scope="team"' in one.content[0].text  # type: ignore[union-attr]


async def test_explain_takes_the_score_apart_into_parts_that_sum_to_it(running: Stack) -> None:
    facts = ["The billing service retries failed webhooks with exponential backoff",
             "Webhook retries stop after 12 attempts and page the on-call engineer",
             "Frontend components are written in Svelte with TypeScript"]
    for importance, fact in enumerate(facts, start=2):
        saved = await running.service.save(running.principal, fact, importance=importance)
        assert await running.wait_status(saved.id) is MemoryStatus.ACTIVE
    async with Client(running.server) as client:
        explained = await call(client, "search_memory", query="webhook retries", limit=3,
                               explain=True)
        plain = await call(client, "search_memory", query="webhook retries", limit=3)
    results = explained["results"]
    assert [r["id"] for r in results] == [r["id"] for r in plain["results"]]
    assert all("explain" not in r and "score" not in r for r in plain["results"])
    for result in results:
        parts = result["explain"]
        assert set(parts) <= set(PARTS)
        total = sum(parts.get(name, 0.0) for name in PARTS)
        assert math.isclose(total, result["score"], abs_tol=1e-5), (parts, result["score"])
    top = results[0]["explain"]
    assert top["keyword"] > 0 and top["vector"] > 0 and top["importance"] > 0
    assert top.get("recency", 0.0) <= 0  # fresh memories: recency takes (almost) nothing
    assert any(r["explain"].get("neighbour", 0.0) > 0 for r in results)  # saved together
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]


async def _import_lines(stack: Stack, principal: Principal, lines: list[str],
                        project: str) -> list[uuid.UUID]:
    report = await import_items(stack.service, principal, parse_jsonl(lines), project,
                                wait_timeout=60)
    return report.ids


async def test_export_and_import_keep_the_provenance(
    two_members: TwoMembers, admin_pool: asyncpg.Pool
) -> None:
    a = two_members.a
    operator = a.principal.model_copy(update={"key_id": None, "member_id": None,
                                              "member_name": None, "actor": "operator:test"})
    exported = [line async for line in export_lines(a.service, operator, "default")]
    seen = {json.loads(line)["content"]: json.loads(line) for line in exported}
    assert (seen[ONLY_A]["author"], seen[ONLY_A]["scope"]) == ("default", "personal")
    assert (seen[B_OWN]["author"], seen[B_OWN]["origin"]) == ("bob", "tool")
    assert SHARED in seen and TRUNK not in seen  # the team's memories are project '*'
    ids = await _import_lines(a, operator, exported, "copy")
    copies: dict[str, Any] = {}
    for memory_id in ids:
        memory = await a.service.get(operator, memory_id)
        copies[memory.content] = memory
    assert (copies[ONLY_A].author, copies[ONLY_A].scope) == ("default", "personal")
    assert (copies[B_OWN].author, copies[B_OWN].scope) == ("bob", "project")
    assert copies[SHARED].origin == "tool" and copies[SHARED].project == "copy"
    # The personal copy is still its author's alone.
    async with Client(two_members.b_server) as client:
        found = await call(client, "search_memory", query=ONLY_A, project="copy", limit=10)
    assert str(copies[ONLY_A].id) not in {r["id"] for r in found["results"]}

    plain = [json.dumps({"content": "Imported without provenance: the importer's"})]
    [plain_id] = await _import_lines(a, operator, plain, "copy")
    plain_memory = await a.service.get(operator, plain_id)
    assert (plain_memory.author, plain_memory.origin) == (None, "import")
    async with Client(two_members.a.server) as client:
        found = await call(client, "search_memory", query="Imported without provenance",
                           project="copy", limit=10)
        got = await call(client, "get_memory", id=str(plain_id))
    # An operator's memory has no author: the field is absent, and the tools still answer
    # (their output schema once required it, and every search finding one failed).
    [hit] = [r for r in found["results"] if r["id"] == str(plain_id)]
    assert "author" not in hit and hit["origin"] == "import"
    assert "author" not in got and got["content"] == plain_memory.content
    unknown = [json.dumps({"content": "By a stranger", "author": "mallory"})]
    with pytest.raises(ImportFailed, match="author 'mallory' is not a member"):
        await _import_lines(a, operator, unknown, "copy")
