"""Two members of one tenant: a personal memory of one is found by no path by the other (tools,
resources, /api, /hooks, export, SQL as the application role), exactly like a memory of
another tenant; project and team memories are shared; the author finds its personal memories
ranked with the project's."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from mcp import Client

from mcp_server.server import create_server
from mcp_server.transfer import export_lines
from team_memory_core.models.memories import MemoryStatus
from tests.conftest import Stack, new_member
from tests.mcp_server.conftest import B_OWN, ONLY_A, SHARED, TRUNK, TwoMembers
from tests.mcp_server.test_http import HttpServer, http_server
from tests.mcp_server.test_tools import call, call_error

pytestmark = pytest.mark.anyio
__all__ = ["http_server"]  # the fixture, imported for these tests

SECRET = "zebrafish"
QUERIES = ("zebrafish billing cluster signing keys", ONLY_A, "which cluster rotates keys")


def _text(result: Any) -> str:
    return json.dumps(result, default=str)


def _as_missing(text: str, memory_id: str) -> str:
    return text.replace(memory_id, "<id>")


async def _by_id_answers(client: Client, memory_id: str) -> list[str]:
    """What B hears about one id from every tool and resource that takes one."""
    answers = [
        await call_error(client, "get_memory", id=memory_id, include_history=True),
        await call_error(client, "get_memories", ids=[memory_id]),
        await call_error(client, "forget_memory", id=memory_id, reason="x"),
        await call_error(client, "purge_memory", id=memory_id, reason="x"),
        _text(await call(client, "memory_status", id=memory_id)),
    ]
    with pytest.raises(Exception, match="no memory") as resource:
        await client.read_resource(f"memory://memories/{memory_id}")
    return [_as_missing(answer, memory_id) for answer in [*answers, str(resource.value)]]


async def test_a_personal_memory_reaches_no_tool_or_resource_of_another_member(
    two_members: TwoMembers,
) -> None:
    personal, unknown = two_members.personal_id, str(uuid.uuid4())
    async with Client(two_members.b_server) as client:
        personal_seen = await _by_id_answers(client, personal)
        unknown_seen = await _by_id_answers(client, unknown)
        searches = [await call(client, "search_memory", query=query, limit=50,
                               include_history=True) for query in QUERIES]
        resources = [(await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]
                     for uri in ("memory://recent_summary", "memory://working_set")]
        shared = await call(client, "get_memories", ids=[two_members.project_id,
                                                         two_members.team_id])
    assert personal_seen == unknown_seen  # a personal memory looks exactly like a missing one
    assert SECRET not in _text(searches) + "".join(resources)
    assert all(r["id"] != personal for found in searches for r in found["results"])
    # The shared memories are B's to read.
    assert [m["content"] for m in shared["memories"]] == [SHARED, TRUNK]
    assert SHARED in resources[1] and TRUNK in resources[1] and B_OWN in resources[1]
    # B's refused forget and purge changed nothing of A's.
    kept = await two_members.a.service.get(two_members.a.principal, uuid.UUID(personal))
    assert (kept.status, kept.content) == (MemoryStatus.ACTIVE, ONLY_A)


async def test_the_author_finds_its_personal_memories_ranked_with_the_projects(
    two_members: TwoMembers,
) -> None:
    async with Client(two_members.a.server) as client:
        found = await call(client, "search_memory", query="which cluster rotates its signing "
                           "keys, and how do we deploy", limit=10)
        current = (await client.read_resource("memory://working_set")).contents[0]
        own = await call(client, "get_memory", id=two_members.personal_id)
    ids = [r["id"] for r in found["results"]]
    assert ids[0] == two_members.personal_id
    assert {two_members.project_id, two_members.b_own_id} <= set(ids)
    assert ONLY_A in current.text and B_OWN in current.text  # type: ignore[union-attr]
    assert own["content"] == ONLY_A


async def test_a_personal_memory_over_the_api_the_hooks_and_export(
    two_members: TwoMembers, http_server: HttpServer,
) -> None:
    personal, unknown = two_members.personal_id, str(uuid.uuid4())
    answers: dict[str, dict[str, list[Any]]] = {}
    for who, key in (("a", two_members.a.api_key), ("b", two_members.b_key)):
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=http_server.base, headers=headers) as http:
            seen: dict[str, list[Any]] = {}
            for memory_id in (personal, unknown):
                read = await http.get(f"/api/memories/{memory_id}")
                seen[memory_id] = [(read.status_code, _as_missing(read.text, memory_id))]
            search = await http.get("/api/search", params={"q": QUERIES[0], "limit": "50"})
            context = await http.post("/hooks/context", json={
                "session_id": f"s-{who}", "project": "default"})
            seen["search"] = [search.status_code, search.text]
            seen["context"] = [context.status_code, context.json()["context"]]
            if who == "b":  # forgetting it is refused as for a missing memory
                for memory_id in (personal, unknown):
                    forget = await http.post(f"/api/memories/{memory_id}/forget",
                                             json={"reason": "x"})
                    seen[memory_id].append((forget.status_code,
                                            _as_missing(forget.text, memory_id)))
            answers[who] = seen
    exports = {who: [line async for line in export_lines(
        two_members.a.service, principal, "default")]
        for who, principal in (("a", two_members.a.principal), ("b", two_members.b))}

    b = answers["b"]
    assert b[personal] == b[unknown] and [s for s, _ in b[unknown]] == [404, 404]
    assert SECRET not in b["search"][1] + b["context"][1] + "".join(exports["b"])
    assert B_OWN in b["context"][1] and SHARED in b["context"][1]
    a = answers["a"]
    assert a[personal][0][0] == 200 and SECRET in a["search"][1]
    assert SECRET in a["context"][1] and any(SECRET in line for line in exports["a"])
    assert len(exports["a"]) == len(exports["b"]) + 1


async def _as_member(conn: asyncpg.Connection, two: TwoMembers, member: uuid.UUID | None) -> None:
    await conn.execute(
        "SELECT set_config('app.tenant_id', $1, true), set_config('app.member_id', $2, true)",
        str(two.a.principal.tenant_id), "" if member is None else str(member))


async def _rows_of_the_personal_memory(conn: asyncpg.Connection,
                                       personal: uuid.UUID) -> dict[str, int]:
    counts = {}
    for name, statement in {
        "memories": "SELECT count(*) FROM memories WHERE id = $1 OR content LIKE '%zebrafish%'",
        "memory_events": "SELECT count(*) FROM memory_events WHERE memory_id = $1",
        "memory_anchors": "SELECT count(*) FROM memory_anchors WHERE memory_id = $1",
        "memory_postings": "SELECT count(*) FROM memory_postings WHERE memory_id = $1"
                           " OR lexeme = 'zebrafish'",
        "memory_lexemes": "SELECT count(*) FROM memory_lexemes WHERE lexeme = 'zebrafish'"
                          " AND $1::uuid IS NOT NULL",
        "memory_scopes": "SELECT count(*) FROM memory_scopes WHERE private_to IS NOT NULL"
                         " AND $1::uuid IS NOT NULL",
    }.items():
        counts[name] = int(await conn.fetchval(statement, personal))
    return counts


async def test_application_role_with_another_member_sees_nothing_of_a_personal_memory(
    two_members: TwoMembers, app_pool: asyncpg.Pool,
) -> None:
    personal = uuid.UUID(two_members.personal_id)
    seen = {}
    for who, member in (("b", two_members.b.member_id), ("a", two_members.a.principal.member_id),
                        ("worker", None)):
        async with app_pool.acquire() as conn, conn.transaction():
            await _as_member(conn, two_members, member)
            seen[who] = await _rows_of_the_personal_memory(conn, personal)
            seen[who]["all memories"] = int(await conn.fetchval("SELECT count(*) FROM memories"))
            if who == "b":
                forgotten = await conn.execute(
                    "UPDATE memories SET status = 'forgotten' WHERE id = $1", personal)
    assert set(seen["b"].values()) == {0, 3}  # nothing of it; the three shared memories
    assert seen["b"]["all memories"] == 3 and forgotten == "UPDATE 0"
    for who in ("a", "worker"):
        assert all(count > 0 for count in seen[who].values()), seen[who]
    assert seen["a"]["all memories"] == seen["worker"]["all memories"] == 4


@pytest.mark.parametrize(("statement", "arguments"), [
    ("INSERT INTO memories (id, tenant_id, project, content, category, content_hash, private_to)"
     " VALUES (gen_random_uuid(), $1, 'default', 'planted', 'general', 'h', $2)",
     ("tenant", "a")),
    ("UPDATE memories SET private_to = $2 WHERE tenant_id = $1", ("tenant", "a")),
    ("INSERT INTO memory_events (tenant_id, memory_id, event) VALUES ($1, $2, 'planted')",
     ("tenant", "personal")),
    ("INSERT INTO memory_anchors (tenant_id, memory_id, project, path)"
     " VALUES ($1, $2, 'default', 'planted.py')", ("tenant", "personal")),
])
async def test_application_role_cannot_write_another_members_personal_rows(
    two_members: TwoMembers, app_pool: asyncpg.Pool, statement: str, arguments: tuple[str, ...]
) -> None:
    values = {"tenant": two_members.a.principal.tenant_id,
              "a": two_members.a.principal.member_id,
              "personal": uuid.UUID(two_members.personal_id)}
    async with app_pool.acquire() as conn, conn.transaction():
        await _as_member(conn, two_members, two_members.b.member_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute(statement, *(values[name] for name in arguments))


async def test_a_waiting_outbox_row_is_its_members_alone(
    stack: Stack, admin_pool: asyncpg.Pool, app_pool: asyncpg.Pool
) -> None:
    b, _ = await new_member(admin_pool, stack.principal, "bob")
    saved = await stack.service.save(stack.principal, ONLY_A, scope="personal")  # no worker
    counts = {}
    for member in (b.member_id, stack.principal.member_id):
        async with app_pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true),"
                               " set_config('app.member_id', $2, true)",
                               str(stack.principal.tenant_id), str(member))
            counts[member] = await conn.fetchval(
                "SELECT count(*) FROM ingest_outbox WHERE memory_id = $1", saved.id)
    assert counts == {b.member_id: 0, stack.principal.member_id: 1}
    server = create_server(stack.service, default_principal=b)
    async with Client(server) as client:
        found = await call(client, "search_memory", query=ONLY_A)  # pending: read-your-writes
    assert all(r["id"] != str(saved.id) for r in found["results"])


async def test_the_same_text_personal_and_shared_is_two_memories(
    two_members: TwoMembers,
) -> None:
    """A's personal memory is not folded into the same text shared, nor into B's personal
    copy: the ids differ, and each is decided among its own reach."""
    a = two_members.a
    async with Client(two_members.b_server) as client:
        b_copy = await call(client, "save_memory", content=ONLY_A)
        b_personal = await call(client, "save_memory", content=ONLY_A, scope="personal")
    assert await a.wait_status(uuid.UUID(b_copy["id"])) is MemoryStatus.ACTIVE
    async with Client(a.server) as client:
        a_copy = await call(client, "save_memory", content=ONLY_A)
        again = await call(client, "save_memory", content=ONLY_A, scope="personal")
    # The same text shared is one memory whoever saves it; personal, one per member.
    assert a_copy["id"] == b_copy["id"] and a_copy["already_saved"]
    ids = {b_copy["id"], b_personal["id"], two_members.personal_id}
    assert len(ids) == 3 and again["id"] == two_members.personal_id and again["already_saved"]
    b_status = (await a.service.status(a.principal, uuid.UUID(b_personal["id"]))).status
    assert b_status == "unknown"  # B's personal memory is B's alone
    mine = await a.service.get(a.principal, uuid.UUID(two_members.personal_id))
    assert mine.status is MemoryStatus.ACTIVE and mine.duplicate_of is None
    b_mine = await a.service.get(two_members.b, uuid.UUID(b_personal["id"]))
    assert await _settled(a, two_members, uuid.UUID(b_personal["id"])) is MemoryStatus.ACTIVE
    assert b_mine.content == ONLY_A


async def _settled(a: Stack, two: TwoMembers, memory_id: uuid.UUID) -> MemoryStatus:
    """B's memory once its workflow committed it (as B sees it)."""
    b_stack = Stack(a.settings, a.service, two.b_server, two.b, two.b_key, a.client, a.pool,
                    a.embedder)
    return await b_stack.wait_status(memory_id)
