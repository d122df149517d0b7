"""Forget has two levels: soft (recoverable by an operator) and purge (text erased everywhere)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import anyio
import asyncpg
import pytest
from mcp import Client
from temporalio.api.common.v1 import Payload
from temporalio.service import RPCError, RPCStatusCode

from team_memory_core.contract import capture_workflow_id, ingest_workflow_id
from team_memory_core.erasure import Actor, MemoryNotFound, purge, restore
from team_memory_core.llm.client import Distiller
from team_memory_core.models.memories import MemoryStatus, content_hash
from team_memory_core.payload_codec import Envelope, decrypt
from team_memory_core.temporal import connect, keyring_of
from team_memory_core.temporal_keys import KeyUnavailable
from tests.conftest import Stack
from tests.mcp_server.test_capture import BUGFIX, DECISION, PROJECT, serving
from tests.mcp_server.test_http import HttpServer, http_server
from tests.mcp_server.test_tools import call, call_error
from tests.support.anthropic_server import FakeAnthropic
from tests.support.cli import cli
from tests.temporal_cli import readable, show
from tests.workflows.test_consolidate import consolidate, save
from tests.workflows.test_distillation import MODEL

__all__ = ["http_server"]  # the fixture, imported for these tests

pytestmark = pytest.mark.anyio

MARKER = "quokkaplumbus"
SECRET_TEXT = f"Customer {MARKER} Jane Roe asked us to store her phone number 555-0199"
NEAR_COPY = f"Customer {MARKER} Jane Roe asked us to store her phone-number 555-0199!"


async def find_everywhere(admin: asyncpg.Pool, needle: str) -> list[str]:
    """Every (table.column) of the public schema whose text holds ``needle``, read as the
    superuser (no Row-Level Security)."""
    async with admin.acquire() as conn:
        columns = await conn.fetch(
            """
            SELECT c.table_name, c.column_name FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
              AND c.data_type IN ('text', 'jsonb', 'json', 'tsvector', 'ARRAY',
                                  'character varying', 'USER-DEFINED')
            """)
        found = []
        for column in columns:
            table, name = column["table_name"], column["column_name"]
            hits = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE "{name}"::text ILIKE $1', f"%{needle}%")
            if hits:
                found.append(f"{table}.{name}")
    return found


async def workflow_exists(stack: Stack, workflow_id: str) -> bool:
    try:
        await stack.client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def _operator(stack: Stack) -> Actor:
    return Actor(tenant_id=stack.principal.tenant_id, tenant_name=stack.principal.tenant_name,
                 name="operator:test")


async def test_purge_erases_the_text_from_every_table_and_from_temporal(
    running: Stack, admin_pool: asyncpg.Pool
) -> None:
    async with Client(running.server) as client:
        first = await call(client, "save_memory", content=SECRET_TEXT, tags=[MARKER],
                           files=[f"customers/{MARKER}.md"])
        assert await running.wait_status(uuid.UUID(first["id"])) is MemoryStatus.ACTIVE
        copy = await call(client, "save_memory", content=NEAR_COPY)
        assert await running.wait_status(uuid.UUID(copy["id"])) is MemoryStatus.DUPLICATE
        assert await find_everywhere(admin_pool, MARKER)
        report = await call(client, "purge_memory", id=first["id"], reason="GDPR request 42")
        status = await call(client, "memory_status", id=first["id"])
        gone = await call_error(client, "get_memory", id=first["id"])
        found = await call(client, "search_memory", query=f"{MARKER} phone number",
                           include_history=True)
    assert sorted(report["purged"]) == sorted([first["id"], copy["id"]])
    assert await find_everywhere(admin_pool, MARKER) == []
    assert await find_everywhere(admin_pool, "555-0199") == []
    assert status["status"] == "forgotten" and status["history"][-1]["event"] == "purged"
    assert "no memory" in gone and found["results"] == []
    async with admin_pool.acquire() as conn:
        vectors = await conn.fetchval(
            "SELECT count(*) FROM memories WHERE id = ANY($1::uuid[]) AND embedding IS NOT NULL",
            [uuid.UUID(i) for i in report["purged"]])
        audit = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE action = 'purge' AND target = $1", first["id"])
    assert vectors == 0
    assert audit["outcome"] == "ok" and audit["key_id"] == running.principal.key_id
    assert report["workflows_deleted"] == [
        ingest_workflow_id(running.principal.tenant_name, running.settings.project,
                           content_hash(text), 0) for text in (SECRET_TEXT, NEAR_COPY)]
    with anyio.fail_after(60):
        while any([await workflow_exists(running, w) for w in report["workflows_deleted"]]):
            await anyio.sleep(0.2)
    with pytest.raises(MemoryNotFound):
        await restore(running.pool, _operator(running), uuid.UUID(first["id"]))


async def test_purge_of_a_pending_memory_stops_its_workflow(
    stack: Stack, admin_pool: asyncpg.Pool
) -> None:
    """The outbox relay started the workflow but no worker runs it: still running when the
    purge deletes it."""
    async with stack.relay(), Client(stack.server) as client:
        saved = await call(client, "save_memory", content=SECRET_TEXT)
        workflow_id = (await call(client, "memory_status", id=saved["id"]))["workflow_id"]
        await stack.started(workflow_id)
        await call(client, "purge_memory", id=saved["id"], reason="pasted by mistake")
    with anyio.fail_after(60):
        while await workflow_exists(stack, workflow_id):
            await anyio.sleep(0.2)
    assert await find_everywhere(admin_pool, MARKER) == []


async def test_purge_before_the_relay_starts_the_workflow_leaves_nothing_to_start(
    stack: Stack, admin_pool: asyncpg.Pool
) -> None:
    """Saved while no relay runs (Temporal down, say): the purge deletes the outbox row with
    the text, and the relay, once running, starts no workflow for it."""
    async with Client(stack.server) as client:
        saved = await call(client, "save_memory", content=SECRET_TEXT)
        workflow_id = (await call(client, "memory_status", id=saved["id"]))["workflow_id"]
        await call(client, "purge_memory", id=saved["id"], reason="pasted by mistake")
    later = await stack.service.save(stack.principal, "Saved after the purge, started as usual")
    async with stack.relay():
        await stack.started(later.workflow_id)
    assert not await workflow_exists(stack, workflow_id)
    async with admin_pool.acquire() as conn:
        waiting = await conn.fetchval("SELECT count(*) FROM ingest_outbox WHERE memory_id = $1",
                                      uuid.UUID(saved["id"]))
    assert waiting == 0
    assert await find_everywhere(admin_pool, MARKER) == []


async def test_soft_forget_is_restored_by_an_operator(running: Stack) -> None:
    async with Client(running.server) as client:
        saved = await call(client, "save_memory", content="Restorable decision about caching")
        assert await running.wait_status(uuid.UUID(saved["id"])) is MemoryStatus.ACTIVE
        await call(client, "forget_memory", id=saved["id"], reason="oops, wrong one")
        assert "no memory" in await call_error(client, "get_memory", id=saved["id"])
        done = await anyio.to_thread.run_sync(
            cli, running, "restore", saved["id"], "--tenant", running.principal.tenant_name)
        assert done.returncode == 0, done.stderr
        back = await call(client, "get_memory", id=saved["id"])
        found = await call(client, "search_memory", query="caching decision")
        again = await anyio.to_thread.run_sync(
            cli, running, "restore", saved["id"], "--tenant", running.principal.tenant_name)
        audit = await anyio.to_thread.run_sync(
            cli, running, "audit", "--tenant", running.principal.tenant_name, "--limit", "3")
    assert f"restored {saved['id']} (active)" in done.stdout
    assert "status" not in back and "valid_to" not in back  # active, valid now
    assert found["results"][0]["id"] == saved["id"]
    assert again.returncode == 1 and "no forgotten" in again.stderr
    actions = [line.split()[5] for line in audit.stdout.splitlines()]
    assert actions == ["restore", "forget", "save"], audit.stdout


async def test_purge_takes_the_text_out_of_the_manifesto(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller, admin_pool: asyncpg.Pool
) -> None:
    async with stack.worker():
        secret = await save(stack, SECRET_TEXT, importance=5)
        kept = await save(stack, "Never deploy on Fridays", importance=4)
    # The model quotes the secret in a rule that cites another memory: only rewriting the
    # manifesto without the purged memory, not dropping the rules citing it, removes it.
    fake.script(FakeAnthropic.tool_result({"rules": [
        {"text": f"Call {MARKER} Jane Roe at 555-0199 before a deploy",
         "source_ids": [str(kept)]},
        {"text": "Never deploy on Fridays.", "source_ids": [str(kept)]}]}))
    async with stack.worker(distiller=distiller):
        report = await consolidate(stack)
    assert (report.manifesto_policy, fake.calls) == ("haiku", 1)
    async with Client(stack.server) as client:
        assert MARKER in await _manifesto_texts(client)
        await call(client, "purge_memory", id=str(secret), reason="GDPR request 43")
        after = await _manifesto_texts(client)
    assert MARKER not in after and "555-0199" not in after
    assert "Never deploy on Fridays" in after
    assert await find_everywhere(admin_pool, MARKER) == []


async def test_a_manifesto_written_during_a_purge_does_not_bring_the_text_back(
    stack: Stack, fake: FakeAnthropic
) -> None:
    """The nightly run reads the memories, asks the model (held here), the purge commits,
    then the run writes: it must notice the purge instead of writing the model's rules."""
    async with stack.worker():
        secret = await save(stack, SECRET_TEXT, importance=5)
        await save(stack, "Never deploy on Fridays", importance=4)
    fake.script(FakeAnthropic.held(FakeAnthropic.tool_result({"rules": [
        {"text": f"Call {MARKER} Jane Roe at 555-0199", "source_ids": [str(secret)]}]})))
    async with Distiller(api_key="test", model=MODEL, base_url=fake.base_url,
                         timeout_s=120) as patient, stack.worker(distiller=patient):
        run = asyncio.create_task(consolidate(stack))
        with anyio.fail_after(60):
            while fake.calls < 1:
                await anyio.sleep(0.05)
        async with Client(stack.server) as client:
            await call(client, "purge_memory", id=str(secret), reason="GDPR request 45")
        fake.release()
        report = await run
    view = await stack.service.manifesto(stack.principal, None)
    assert report.manifesto_policy == "local"
    assert [rule.text for rule in view.rules] == ["Never deploy on Fridays"]


async def _manifesto_texts(client: Client) -> str:
    prompt = await client.get_prompt("manifesto", {})
    resource = await client.read_resource("memory://manifesto")
    return (prompt.messages[0].content.text  # type: ignore[union-attr]
            + resource.contents[0].text)  # type: ignore[union-attr]


RESAVED = "The staging database is reset every Sunday night at 02:00 UTC"


async def test_resaving_forgotten_or_purged_text_creates_a_new_memory(running: Stack) -> None:
    async with Client(running.server) as client:
        first = await call(client, "save_memory", content=RESAVED)
        assert await running.wait_status(uuid.UUID(first["id"])) is MemoryStatus.ACTIVE
        twice = await call(client, "save_memory", content=RESAVED)
        await call(client, "forget_memory", id=first["id"], reason="reset moved to Monday")
        second = await call(client, "save_memory", content=RESAVED)
        assert await running.wait_status(uuid.UUID(second["id"])) is MemoryStatus.ACTIVE
        second_again = await call(client, "save_memory", content=RESAVED)
        workflows = [(await call(client, "memory_status", id=saved["id"]))["workflow_id"]
                     for saved in (first, second)]
        purged = await call(client, "purge_memory", id=second["id"], reason="GDPR request 44")
        third = await call(client, "save_memory", content=RESAVED)
        assert await running.wait_status(uuid.UUID(third["id"])) is MemoryStatus.ACTIVE
        read = await call(client, "get_memory", id=third["id"])
        first_now = await call(client, "memory_status", id=first["id"])
        third_now = await call(client, "memory_status", id=third["id"])
    assert (twice["id"], twice.get("already_saved")) == (first["id"], True)
    assert (second_again["id"], second_again.get("already_saved")) == (second["id"], True)
    for saved in (second, third):  # an ordinary new save: pending, not "already saved"
        assert "already_saved" not in saved and "status" not in saved
    assert len({first["id"], second["id"], third["id"]}) == 3
    assert len({*workflows, third_now["workflow_id"]}) == 3
    assert purged["workflows_deleted"] == [workflows[1]]
    assert read["content"] == RESAVED and first_now["status"] == "forgotten"
    assert third_now["status"] == "active"
    assert await workflow_exists(running, workflows[0])  # the forgotten memory's, completed
    assert await workflow_exists(running, third_now["workflow_id"])


async def first_input(stack: Stack, workflow_id: str) -> Payload:
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    payload: Payload = history.events[0].workflow_execution_started_event_attributes.input \
        .payloads[0]
    return payload


async def assert_unreadable(stack: Stack, server: HttpServer, workflow_id: str,
                            payload: Payload, needles: list[str]) -> None:
    """Right after a purge, whether or not Temporal has deleted the history yet: no key opens
    it, neither through the codec endpoint (with a key of the tenant) nor in a process
    without cached keys, nor, checked against the database, in one that used the key."""
    done = await asyncio.to_thread(
        show, stack.settings.temporal_target, workflow_id, "--codec-endpoint",
        f"{server.base}/codec", "--codec-auth", f"Bearer {stack.api_key}")
    if done.returncode == 0:  # still there
        assert readable(done.stdout, needles) == [], done.stdout[-2000:]
    fresh = keyring_of(await connect(stack.settings, stack.pool))
    for keyring in (fresh, keyring_of(stack.client)):
        with pytest.raises(KeyUnavailable):
            await decrypt(keyring, payload, Envelope.read(payload), still_stored=True)


async def test_purged_history_is_unreadable_at_once(
    running: Stack, http_server: HttpServer, admin_pool: asyncpg.Pool
) -> None:
    saved = await running.service.save(running.principal, SECRET_TEXT)
    assert await running.wait_status(saved.id) is MemoryStatus.ACTIVE
    sealed = await first_input(running, saved.workflow_id)
    # Purged by an operator's process: the server and worker hold the key in memory.
    operator = Actor(tenant_id=running.principal.tenant_id,
                     tenant_name=running.principal.tenant_name, name="operator:test")
    report = await purge(running.pool, await connect(running.settings, running.pool),
                         running.settings, operator, saved.id, "GDPR request 43")
    assert report.keys_shredded == [saved.workflow_id]
    await assert_unreadable(running, http_server, saved.workflow_id, sealed, [MARKER, "555-0199"])
    async with admin_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM temporal_workflow_keys "
                                   "WHERE workflow_id = $1", saved.workflow_id) == 0


async def test_purging_a_captured_memory_destroys_its_session_history(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    async with serving(stack, fake, tmp_path) as cap:
        session_id, rows = await cap.replay_recorded_session()
        captured = {row.content: row for row in rows}
        session = capture_workflow_id(stack.principal.tenant_name, stack.principal.key_id,
                                      session_id)
        sealed = await first_input(stack, session)
        kept = ingest_workflow_id(stack.principal.tenant_name, PROJECT, content_hash(BUGFIX),
                                  0)
        report = await stack.service.purge(stack.principal, captured[DECISION].id,
                                           "customer asked")
        server = HttpServer(url="", base=cap.config.server)
        # The hook text and the purged observation; the session history also starts the
        # other observation's ingestion, sealed with that (kept) memory's own key.
        await assert_unreadable(stack, server, session, sealed,
                                ["default=uuid7", "time-sortable"])
        assert session in report.workflows_deleted and session in report.keys_shredded
        # The other observation of the session stays, readable by its tenant.
        bugfix = await stack.service.get(stack.principal, captured[BUGFIX].id)
        assert bugfix.content == BUGFIX
        done = await asyncio.to_thread(
            show, stack.settings.temporal_target, kept, "--codec-endpoint",
            f"{cap.config.server}/codec", "--codec-auth", f"Bearer {stack.api_key}")
        assert readable(done.stdout, ["second approver", BUGFIX[:40]]) == [BUGFIX[:40]]
