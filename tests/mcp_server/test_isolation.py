"""Two tenants with overlapping content: nothing of one reaches the other, through any tool,
resource or search, nor through direct SQL as the application role."""

from __future__ import annotations

import ast
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from mcp import Client

import mcp_server
from mcp_server.server import create_server
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from team_memory_core.store.pool import tenant_tx
from team_memory_core.tenants import create_key
from tests.conftest import Stack, new_tenant
from tests.mcp_server.conftest import ONLY_A, TwoTenants
from tests.mcp_server.test_http import HttpServer, http_server
from tests.mcp_server.test_tools import call, call_error

pytestmark = pytest.mark.anyio
__all__ = ["http_server"]  # the fixture, imported for these tests

def _text(result: Any) -> str:
    return json.dumps(result, default=str)


async def test_same_content_in_two_tenants_stays_two_memories(two: TwoTenants) -> None:
    assert two.b_shared_id not in two.a_ids
    async with Client(two.b_server) as client:
        found = await call(client, "search_memory", query="how do we deploy services", limit=10)
    assert [r["id"] for r in found["results"]] == [two.b_shared_id]


async def test_other_tenants_ids_are_unknown_to_every_tool_and_resource(two: TwoTenants) -> None:
    a_id = two.a_ids[1]
    async with Client(two.b_server) as client:
        assert "no memory" in await call_error(client, "get_memory", id=a_id,
                                               include_history=True)
        assert "no memory" in await call_error(client, "get_memories", ids=[a_id])
        assert "no memory" in await call_error(client, "get_memories",
                                               ids=[two.b_shared_id, a_id])
        assert "no memory" in await call_error(client, "forget_memory", id=a_id, reason="x")
        assert "no memory" in await call_error(client, "purge_memory", id=a_id, reason="x")
        status = await call(client, "memory_status", id=a_id)
        with pytest.raises(Exception, match="no memory"):
            await client.read_resource(f"memory://memories/{a_id}")
        summary = await client.read_resource("memory://recent_summary")
    assert status == {**status, "status": "unknown", "history": []}
    assert "zebrafish" not in summary.contents[0].text  # type: ignore[union-attr]
    # The refused forget and purge changed nothing of A's.
    a_memory = await two.a.service.get(two.a.principal, uuid.UUID(a_id))
    assert (a_memory.status, a_memory.content) == (MemoryStatus.ACTIVE, ONLY_A)


async def test_search_terms_of_another_tenant_find_nothing(two: TwoTenants) -> None:
    async with Client(two.b_server) as client:
        for query in ("zebrafish billing cluster signing keys", ONLY_A, "rotates every 17 days"):
            found = await call(client, "search_memory", query=query, limit=50,
                               include_history=True, project="default")
            assert all(r["id"] == two.b_shared_id for r in found["results"]), found
            assert "zebrafish" not in _text(found)


async def test_forged_project_on_a_project_bound_key_is_refused(
    running: Stack, admin_pool: asyncpg.Pool
) -> None:
    bound, _ = await new_tenant(admin_pool, project="api")
    server = create_server(running.service, default_principal=bound)
    async with Client(server) as client:
        error = await call_error(client, "save_memory", content="forged", project="web")
        search_error = await call_error(client, "search_memory", query="x", project="web")
        saved = await call(client, "save_memory", content="Bound keys save to their project")
    assert "limited to project 'api'" in error
    assert "limited to project 'api'" in search_error
    assert saved["project"] == "api"
    async with tenant_tx(running.pool, bound.tenant_id) as conn:
        projects = [r["project"] for r in await conn.fetch("SELECT project FROM memories")]
    assert projects == ["api"]


async def test_read_only_key_searches_but_cannot_write(
    two: TwoTenants, admin_pool: asyncpg.Pool
) -> None:
    reader = two.a.principal.model_copy(update={"read_only": True})
    server = create_server(two.a.service, default_principal=reader)
    async with Client(server) as client:
        found = await call(client, "search_memory", query="zebrafish signing keys")
        save_error = await call_error(client, "save_memory", content="read-only write")
        forget_error = await call_error(client, "forget_memory", id=two.a_ids[1], reason="x")
        purge_error = await call_error(client, "purge_memory", id=two.a_ids[1], reason="x")
    assert found["results"][0]["id"] == two.a_ids[1]
    for error in (save_error, forget_error, purge_error):
        assert "read-only" in error
    memory = await two.a.service.get(two.a.principal, uuid.UUID(two.a_ids[1]))
    assert memory.status is MemoryStatus.ACTIVE


# --- direct SQL as the application role -----------------------------------------------------

TENANT_TABLES = ("memories", "memory_events", "audit_log", "memory_lexemes", "memory_scopes")


async def _counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for table in TENANT_TABLES}


async def test_application_role_without_tenant_sees_zero_rows(
    two: TwoTenants, app_pool: asyncpg.Pool, admin_pool: asyncpg.Pool
) -> None:
    async with admin_pool.acquire() as conn:  # superuser: the rows do exist
        assert all(count > 0 for count in (await _counts(conn)).values())
    async with app_pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") in (None, "")
        assert await _counts(conn) == dict.fromkeys(TENANT_TABLES, 0)
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', '', true)")
            assert await _counts(conn) == dict.fromkeys(TENANT_TABLES, 0)


async def test_every_tenant_table_forces_row_level_security(admin_pool: asyncpg.Pool) -> None:
    """A new table with a tenant_id column must be FORCEd; only the registry (tenants, keys,
    members: administered across tenants by the owner, read through SECURITY DEFINER) is
    not."""
    rows = await admin_pool.fetch(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND EXISTS (
            SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')
        """)
    unforced = {r["relname"] for r in rows
                if not (r["relrowsecurity"] and r["relforcerowsecurity"])}
    assert set(TENANT_TABLES) <= {r["relname"] for r in rows}
    assert unforced == {"api_keys", "members"}


async def test_application_role_with_another_tenant_sees_none_of_the_first(
    two: TwoTenants, app_pool: asyncpg.Pool
) -> None:
    a = str(two.a.principal.tenant_id)
    async with tenant_tx(app_pool, two.b.tenant_id) as conn:
        for table in TENANT_TABLES:
            assert await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id = $1", a) == 0
            assert await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id <> $1", str(two.b.tenant_id)) == 0
        assert await conn.fetchval("SELECT count(*) FROM memories") == 1
        assert await conn.fetchval(
            "SELECT count(*) FROM memories WHERE content LIKE '%zebrafish%'") == 0
        assert await conn.fetchval("SELECT count(*) FROM api_keys WHERE tenant_id = $1", a) == 0
        assert await conn.fetchval("SELECT count(*) FROM tenants WHERE id = $1", a) == 0


@pytest.mark.parametrize("statement", [
    "INSERT INTO memories (id, tenant_id, project, content, category, content_hash)"
    " VALUES (gen_random_uuid(), $1, 'default', 'planted', 'general', 'h')",
    "INSERT INTO memory_events (tenant_id, memory_id, event)"
    " SELECT $1, id, 'planted' FROM memories LIMIT 1",
    "INSERT INTO audit_log (tenant_id, actor, action, outcome) VALUES ($1, 'x', 'x', 'ok')",
    "UPDATE memories SET tenant_id = $1",
])
async def test_writing_rows_for_another_tenant_is_refused(
    two: TwoTenants, app_pool: asyncpg.Pool, statement: str
) -> None:
    async with tenant_tx(app_pool, two.b.tenant_id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute(statement, two.a.principal.tenant_id)


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET outcome = 'ok'",
    "DELETE FROM audit_log",
    "DELETE FROM memory_events",
    "UPDATE memory_events SET after_text = NULL",
    "INSERT INTO audit_log (tenant_id, actor, action, outcome) VALUES (NULL, 'x', 'x', 'ok')",
])
async def test_history_and_audit_are_append_only_for_the_application(
    two: TwoTenants, app_pool: asyncpg.Pool, statement: str
) -> None:
    async with tenant_tx(app_pool, two.a.principal.tenant_id) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)


async def test_purge_function_cannot_reach_another_tenant(
    two: TwoTenants, app_pool: asyncpg.Pool, admin_pool: asyncpg.Pool
) -> None:
    a_ids = [uuid.UUID(i) for i in two.a_ids]
    async with app_pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match=r"needs app\.tenant_id"):
            await conn.fetchval("SELECT purge_event_text($1::uuid[])", a_ids)
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)",
                               str(two.b.tenant_id))
            assert await conn.fetchval("SELECT purge_event_text($1::uuid[])", a_ids) == 0
    async with admin_pool.acquire() as conn:
        kept = await conn.fetchval(
            "SELECT count(*) FROM memory_events WHERE memory_id = ANY($1::uuid[])"
            " AND after_text IS NOT NULL", a_ids)
    assert kept == 2


async def test_audit_log_refuses_changes_even_for_the_owner(
    two: TwoTenants, admin_pool: asyncpg.Pool
) -> None:
    async with admin_pool.acquire() as conn:
        for statement in ("DELETE FROM audit_log", "UPDATE audit_log SET outcome = 'ok'"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(statement)


# --- project-bound keys: by-id paths and SQL ---------------------------------------------------

WEB_ONLY = "The web frontend pins React to the 18.2 line until the router migration ends"


@dataclass
class BoundKey:
    """Memories of three projects in one tenant, and a key of that tenant bound to 'api'."""

    stack: Stack
    key: Principal
    secret: str
    web_id: str
    api_id: str
    everywhere_id: str


@pytest.fixture
async def bound(running: Stack, admin_pool: asyncpg.Pool) -> BoundKey:
    tenant = running.principal.tenant_name
    issued = await create_key(admin_pool, tenant, name="api-only", project="api")
    key = running.principal.model_copy(update={"key_id": issued.key_id, "project": "api"})
    async with Client(running.server) as client:
        ids = [(await call(client, "save_memory", content=text, project=project,
                           importance=4))["id"]
               for text, project in ((WEB_ONLY, "web"), ("The API answers in JSON only", "api"),
                                     ("Every repository uses trunk-based development", "*"))]
    for memory_id in ids:
        assert await running.wait_status(uuid.UUID(memory_id)) is MemoryStatus.ACTIVE
    return BoundKey(running, key, issued.secret, *ids)


def _as_missing(text: str, memory_id: str) -> str:
    return text.replace(memory_id, "<id>")


async def test_project_bound_key_reaches_no_memory_of_another_project_by_id(
    bound: BoundKey,
) -> None:
    web, unknown = bound.web_id, str(uuid.uuid4())
    server = create_server(bound.stack.service, default_principal=bound.key)
    async with Client(server) as client:
        for memory_id in (web, unknown):
            errors = [
                await call_error(client, "get_memory", id=memory_id, include_history=True),
                await call_error(client, "get_memories", ids=[memory_id]),
                await call_error(client, "get_memories", ids=[bound.api_id, memory_id]),
                await call_error(client, "forget_memory", id=memory_id, reason="x"),
                await call_error(client, "purge_memory", id=memory_id, reason="x"),
            ]
            status = await call(client, "memory_status", id=memory_id)
            with pytest.raises(Exception, match="no memory") as resource:
                await client.read_resource(f"memory://memories/{memory_id}")
            seen = [_as_missing(e, memory_id) for e in [*errors, str(resource.value)]]
            if memory_id == web:
                web_seen, web_status = seen, status
        own = await call(client, "get_memories", ids=[bound.api_id, bound.everywhere_id])
    assert web_seen == seen  # another project's memory looks exactly like a missing one
    assert all("no memory" in text for text in seen)
    assert web_status == {**status, "id": web} and web_status["status"] == "unknown"
    assert [m["id"] for m in own["memories"]] == [bound.api_id, bound.everywhere_id]
    kept = await bound.stack.service.get(bound.stack.principal, uuid.UUID(web))
    assert (kept.status, kept.content) == (MemoryStatus.ACTIVE, WEB_ONLY)


async def test_project_bound_key_over_the_browser_api(
    bound: BoundKey, http_server: HttpServer
) -> None:
    headers = {"Authorization": f"Bearer {bound.secret}"}
    unknown = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=http_server.base, headers=headers) as http:
        answers = {}
        for memory_id in (bound.web_id, unknown):
            read = await http.get(f"/api/memories/{memory_id}")
            forget = await http.post(f"/api/memories/{memory_id}/forget", json={"reason": "x"})
            answers[memory_id] = [(r.status_code, _as_missing(r.text, memory_id))
                                  for r in (read, forget)]
        own = await http.get(f"/api/memories/{bound.api_id}")
    assert answers[bound.web_id] == answers[unknown]
    assert [status for status, _ in answers[unknown]] == [404, 404]
    assert own.status_code == 200 and own.json()["memory"]["project"] == "api"


async def test_project_bound_key_still_saves_searches_and_is_committed(bound: BoundKey) -> None:
    server = create_server(bound.stack.service, default_principal=bound.key)
    async with Client(server) as client:
        saved = await call(client, "save_memory", content="The API rate limit is 100 per minute")
        assert await bound.stack.wait_status(uuid.UUID(saved["id"])) is MemoryStatus.ACTIVE
        found = await call(client, "search_memory", query="React router frontend API JSON",
                           limit=10, include_history=True)
        history = await call(client, "memory_status", id=saved["id"])
    ids = {r["id"] for r in found["results"]}
    assert bound.api_id in ids and bound.web_id not in ids
    assert saved["project"] == "api" and history["history"]


async def _bound_sql(conn: asyncpg.Connection, bound: BoundKey) -> None:
    await conn.execute(
        "SELECT set_config('app.tenant_id', $1, true), set_config('app.projects', $2, true)",
        str(bound.key.tenant_id), "{api,*}")


async def test_application_role_with_a_project_setting_sees_only_those_projects(
    bound: BoundKey, app_pool: asyncpg.Pool
) -> None:
    web = uuid.UUID(bound.web_id)
    async with app_pool.acquire() as conn, conn.transaction():
        await _bound_sql(conn, bound)
        projects = sorted(r["project"] for r in await conn.fetch("SELECT project FROM memories"))
        events = await conn.fetchval(
            "SELECT count(*) FROM memory_events WHERE memory_id = $1", web)
        words = await conn.fetchval(
            "SELECT count(*) FROM memory_postings WHERE project = 'web'")
        statistics = await conn.fetchval(
            "SELECT count(*) FROM memory_lexemes WHERE project = 'web'")
        scopes = await conn.fetchval("SELECT count(*) FROM memory_scopes WHERE project = 'web'")
        forgotten = await conn.execute(
            "UPDATE memories SET status = 'forgotten' WHERE id = $1", web)
    assert projects == ["*", "api"]
    assert (events, words, statistics, scopes) == (0, 0, 0, 0)
    assert forgotten == "UPDATE 0"
    async with tenant_tx(app_pool, bound.key.tenant_id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM memory_events WHERE memory_id = $1",
                                   web) > 0


@pytest.mark.parametrize("statement", [
    "INSERT INTO memories (id, tenant_id, project, content, category, content_hash)"
    " VALUES (gen_random_uuid(), $1, 'web', 'planted', 'general', 'h')",
    "INSERT INTO memory_events (tenant_id, memory_id, event) VALUES ($1, $2, 'planted')",
    "UPDATE memories SET project = 'web' WHERE tenant_id = $1",
    "INSERT INTO manifestos (tenant_id, project, rules, fingerprint, policy)"
    " VALUES ($1, 'web', '[]', 'f', 'local')",
])
async def test_application_role_cannot_write_into_another_project(
    bound: BoundKey, app_pool: asyncpg.Pool, statement: str
) -> None:
    async with app_pool.acquire() as conn, conn.transaction():
        await _bound_sql(conn, bound)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            arguments = [bound.key.tenant_id, uuid.UUID(bound.web_id)]
            await conn.execute(statement, *arguments[:statement.count("$")])


def test_the_front_door_opens_transactions_only_through_principal_tx() -> None:
    """A request's transaction must carry the key's project: mcp_server never calls
    tenant_tx directly (that would run a bound key's queries across the whole tenant)."""
    offenders = []
    for path in Path(mcp_server.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name | ast.Attribute) and "tenant_tx" in (
                    node.id if isinstance(node, ast.Name) else node.attr):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


async def test_security_definer_functions_are_for_the_application_only_and_documented(
    admin_pool: asyncpg.Pool,
) -> None:
    """They run with the owner's rights: PUBLIC (any role of the cluster) must not execute
    them, and docs/security.md must say what each one does."""
    async with admin_pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT p.proname,
                   has_function_privilege('public', p.oid, 'EXECUTE') AS public_may,
                   has_function_privilege('team_memory_app', p.oid, 'EXECUTE') AS app_may
            FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
            ORDER BY 1
            """)
    documented = (Path(mcp_server.__file__).parents[1] / "docs" / "security.md").read_text()
    assert [r["proname"] for r in rows] == [
        "audit_auth_failure", "authenticate_key", "consolidation_scopes",
        "ingest_outbox_tenants", "purge_event_text", "reembed_abandon", "reembed_begin",
        "reembed_finish", "reembed_switch", "reembed_tenants", "tenant_id_named"]
    assert [r["proname"] for r in rows if r["public_may"] or not r["app_may"]] == []
    assert [r["proname"] for r in rows if f"`{r['proname']}(" not in documented] == []
