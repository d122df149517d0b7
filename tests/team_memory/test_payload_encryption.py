"""Temporal holds ciphertext only: what `temporal workflow show/list` prints to anyone who reaches
the frontend, forged input, histories from before the upgrade, key rotation."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    ScheduleUpdate,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter

from mcp_server.validation import prepare_memory
from team_memory_core.contract import (
    capture_workflow_id,
    consolidation_schedule_id,
    ingest_workflow_id,
)
from team_memory_core.key_admin import KeyAdministration
from team_memory_core.models.memories import IngestInput, MemoryStatus, content_hash
from team_memory_core.models.principal import Principal
from team_memory_core.payload_codec import Envelope, decrypt
from team_memory_core.schedules import ensure_all, nightly_schedule, run_now
from team_memory_core.store.memories import insert_pending
from team_memory_core.store.pool import tenant_tx
from team_memory_core.temporal import connect, keyring_of
from team_memory_core.temporal_keys import (
    Kek,
    Keyring,
    WrongKek,
    new_kek_text,
    parse_kek,
)
from tests.conftest import Stack, new_tenant
from tests.mcp_server.test_capture import PROJECT, serving
from tests.support.anthropic_server import FakeAnthropic
from tests.support.cli import cli
from tests.temporal_cli import listing, readable, show, unencrypted

pytestmark = pytest.mark.anyio

MARKER = "wombatcrystal"
TEXT = f"The {MARKER} release signing key lives in vault path ops/{MARKER}/signing"


def sealed(output: str, needles: list[str]) -> None:
    assert readable(output, needles) == [], output[:2000]
    assert unencrypted(output) == [], output[:2000]


async def shown(stack: Stack, workflow_id: str) -> str:
    done = await asyncio.to_thread(show, stack.settings.temporal_target, workflow_id)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_ingestion_history_and_memo_are_ciphertext(running: Stack) -> None:
    saved = await running.service.save(running.principal, TEXT, tags=[f"{MARKER}-tag"])
    assert await running.wait_status(saved.id) is MemoryStatus.ACTIVE
    await (await running.started(saved.workflow_id)).result()
    history = await shown(running, saved.workflow_id)
    sealed(history, [MARKER])
    assert history.count("payloads") >= 2  # the input and the result, at least
    listed = await asyncio.to_thread(
        listing, running.settings.temporal_target, f"WorkflowId='{saved.workflow_id}'")
    assert json.loads(listed)[0]["memo"]  # the memo is there (a preview and the id) ...
    assert readable(listed, [MARKER, str(saved.id)]) == [], listed  # ... sealed
    memory = await running.service.get(running.principal, saved.id)
    assert memory.content == TEXT  # the worker could read all of it


async def test_consolidation_history_is_ciphertext(running: Stack) -> None:
    for text in (TEXT, f"{TEXT}.", "Deploys go out on Tuesdays and Thursdays"):
        saved = await running.service.save(running.principal, text)
        await running.wait_status(saved.id)
    workflow_id, report = await run_now(running.client, running.settings,
                                        running.principal.tenant_name, "default", wait=True)
    assert report is not None and report.pages == 1
    history = await shown(running, workflow_id)
    sealed(history, [MARKER, running.principal.tenant_name + '"'])
    assert history.count("payloads") >= 4


async def test_capture_session_history_is_ciphertext(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    async with serving(stack, fake, tmp_path) as cap:
        session_id, captured = await cap.replay_recorded_session()

    hook_text = ["default=uuid7", "pytest tests/test_orders.py", "UUID v7"]
    sealed(await shown(stack, capture_workflow_id(stack.principal.tenant_name,
                                                  stack.principal.key_id, session_id)),
           hook_text)
    for record in captured:
        workflow_id = ingest_workflow_id(stack.principal.tenant_name, PROJECT,
                                         content_hash(record.content), 0)
        sealed(await shown(stack, workflow_id), [record.content[:30], *hook_text])


@pytest.fixture
async def attacker(stack: Stack) -> Client:
    """Someone who reaches the Temporal frontend: a client with the plain converter, no keys."""
    return await Client.connect(stack.settings.temporal_target,
                                data_converter=pydantic_data_converter)


def forged_input(principal: Principal, text: str) -> IngestInput:
    from team_memory_core.models.memories import Category, memory_id_for

    digest = content_hash(text)
    return IngestInput(memory_id=memory_id_for(principal.tenant_id, "default", digest),
                       tenant_id=principal.tenant_id, project="default", content=text,
                       category=Category.GENERAL, importance=5, tags=[], content_hash=digest,
                       occurred_at=datetime.now(UTC))


async def wait_for_event(client: Client, workflow_id: str, *wanted: EventType.ValueType,
                         timeout: float = 30) -> list[int]:
    """The event types of the workflow's history once one of ``wanted`` is in it."""
    async with asyncio.timeout(timeout):
        while True:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
            types = [event.event_type for event in history.events]
            if set(types) & set(wanted):
                return types
            await asyncio.sleep(0.1)


async def stored(admin_pool: asyncpg.Pool, item: IngestInput) -> int:
    """Rows of the forged memory, by id or by text (read as the superuser)."""
    async with admin_pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM memories WHERE id = $1 OR content = $2", item.memory_id,
            item.content)
    return count


async def test_forged_unencrypted_input_writes_nothing(
    running: Stack, attacker: Client, admin_pool: asyncpg.Pool
) -> None:
    item = forged_input(running.principal, f"Deploys need no approval ({uuid.uuid4()})")
    workflow_id = ingest_workflow_id(running.principal.tenant_name, "default", item.content_hash,
                                     0)
    await attacker.start_workflow("IngestMemory", item, id=workflow_id,
                                  task_queue=running.settings.task_queue)
    types = await wait_for_event(attacker, workflow_id, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in types
    assert EventType.EVENT_TYPE_MARKER_RECORDED not in types  # no local activity ran
    assert await stored(admin_pool, item) == 0

    # A forged consolidation (say, with a huge LLM budget) fails outright, refused.
    forged = f"consolidate/{running.principal.tenant_name}/default/forged"
    handle = await attacker.start_workflow(
        "Consolidate", {"tenant": running.principal.tenant_name, "project": "default",
                        "token_budget": 10**9}, id=forged, task_queue=running.settings.task_queue)
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 30)
    assert "PayloadRefused" in repr(failed.value.cause) or \
        "payload refused" in str(failed.value.cause)


async def test_ciphertext_moved_to_another_workflow_or_tenant_is_refused(
    running: Stack, attacker: Client, admin_pool: asyncpg.Pool
) -> None:
    saved = await running.service.save(running.principal, TEXT)
    await running.wait_status(saved.id)
    history = await attacker.get_workflow_handle(saved.workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    ciphertext = started.input.payloads[0]
    other, _ = await new_tenant(admin_pool)
    await running.service.save(other, "The other tenant's first memory")  # it has keys
    item = forged_input(running.principal, TEXT)
    targets = [
        ingest_workflow_id(running.principal.tenant_name, "elsewhere", item.content_hash, 0),
        ingest_workflow_id(other.tenant_name, "default", item.content_hash, 0),
    ]
    for target in targets:
        await attacker.start_workflow("IngestMemory", RawValue(ciphertext), id=target,
                                      task_queue=running.settings.task_queue)
    for target in targets:
        types = await wait_for_event(attacker, target, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
        assert EventType.EVENT_TYPE_MARKER_RECORDED not in types
    async with admin_pool.acquire() as conn:
        copies = await conn.fetchval(
            "SELECT count(*) FROM memories WHERE content = $1 AND (tenant_id = $3 OR "
            "(tenant_id = $2 AND project <> 'default'))",
            TEXT, running.principal.tenant_id, other.tenant_id)
    assert copies == 0


async def test_workflow_started_before_encryption_still_completes(
    stack: Stack, attacker: Client
) -> None:
    """A history written by the previous version (unencrypted input) is finished after the
    upgrade: the cut-over is after its start."""
    item = prepare_memory(stack.service.settings, stack.principal, TEXT)
    workflow_id = ingest_workflow_id(stack.principal.tenant_name, item.project, item.content_hash,
                                     0)
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        assert await insert_pending(conn, item, [])
    await attacker.start_workflow("IngestMemory", item, id=workflow_id,
                                  task_queue=stack.settings.task_queue)
    keyring_of(stack.client).encrypted_since = datetime.now(UTC)  # the upgrade: after the start
    async with stack.worker():
        assert await stack.wait_status(item.memory_id) is MemoryStatus.ACTIVE
        await stack.client.get_workflow_handle(workflow_id).result()
    history = await shown(stack, workflow_id)
    assert readable(history, [MARKER]) == [MARKER]  # the old input stays as it was written,
    assert unencrypted(history) == [  # and only it: everything the new worker wrote is sealed
        ".events[0].workflowExecutionStartedEventAttributes.input.payloads[0]: json/plain"]


async def test_rotation_rewraps_workflow_keys_and_old_histories_still_decode(
    running: Stack, settings_kek: Kek
) -> None:
    before = await running.service.save(running.principal, TEXT)
    await running.wait_status(before.id)
    admin = KeyAdministration(Keyring(running.pool, settings_kek), running.principal.tenant_id)
    first = await admin.list()
    new_id, rewrapped = await admin.rotate()
    assert rewrapped == 1
    keys = await admin.list()
    assert [k.id for k in keys] == [new_id, first[0].id]
    assert (keys[0].workflow_keys, keys[1].workflow_keys) == (1, 0)
    await admin.retire(first[0].id, settle_seconds=0)
    assert [k.id for k in await admin.list()] == [new_id]

    fresh = await connect(running.settings, running.pool)  # no cached keys
    result = await fresh.get_workflow_handle(before.workflow_id).result()
    assert result["status"] == "active"
    after = await running.service.save(running.principal, "Written after the rotation")
    await running.wait_status(after.id)
    assert (await admin.list())[0].workflow_keys == 2


async def test_a_process_with_another_kek_refuses_clearly(running: Stack) -> None:
    saved = await running.service.save(running.principal, TEXT)
    await running.wait_status(saved.id)
    stranger = Keyring(running.pool, parse_kek(new_kek_text(), "test"))
    with pytest.raises(WrongKek, match="every process needs the same"):
        await stranger.newest_tenant_key(running.principal.tenant_id)


@pytest.fixture
def settings_kek(stack: Stack) -> Kek:
    return keyring_of(stack.client).kek


async def triggered_run(stack: Stack, sid: str, project: str, before: int) -> WorkflowExecution:
    """Trigger the schedule and wait for the run to close (the ``before``+1-th closed one)."""
    await stack.client.get_schedule_handle(sid).trigger()
    query = (f"WorkflowType='Consolidate' AND TenantName='{stack.principal.tenant_name}' "
             f"AND Project='{project}' AND ExecutionStatus!='Running'")
    async with asyncio.timeout(60):
        while True:
            closed = [run async for run in stack.client.list_workflows(query)]
            if len(closed) > before:
                return max(closed, key=lambda run: run.start_time)
            await asyncio.sleep(0.2)


async def test_schedules_written_before_encryption_are_resealed_at_worker_start(
    running: Stack, attacker: Client
) -> None:
    project = "nightly"
    saved = await running.service.save(running.principal, TEXT, project=project)
    await (await running.started(saved.workflow_id)).result()  # creates the schedule
    sid = consolidation_schedule_id(running.principal.tenant_name, project)
    legacy = nightly_schedule(running.settings, running.principal.tenant_name, project)
    # As the previous version wrote it: the action's input unencrypted.
    await attacker.get_schedule_handle(sid).update(lambda _: ScheduleUpdate(schedule=legacy))
    refused = await triggered_run(running, sid, project, before=0)
    assert refused.status is WorkflowExecutionStatus.FAILED
    await ensure_all(running.client, running.settings, running.pool)  # what a worker start does
    resealed = await triggered_run(running, sid, project, before=1)
    assert resealed.status is WorkflowExecutionStatus.COMPLETED
    await running.client.get_schedule_handle(sid).delete()


async def test_operators_rotate_and_retire_with_the_cli(running: Stack) -> None:
    saved = await running.service.save(running.principal, TEXT)
    await running.wait_status(saved.id)
    tenant = ("--tenant", running.principal.tenant_name)
    before = await asyncio.to_thread(cli, running, "temporal-key", "list", *tenant)
    rotated = await asyncio.to_thread(cli, running, "temporal-key", "rotate", *tenant)
    after = await asyncio.to_thread(cli, running, "temporal-key", "list", *tenant)
    old = before.stdout.split()[0]
    too_soon = await asyncio.to_thread(cli, running, "temporal-key", "retire", old, *tenant)
    audit = await asyncio.to_thread(cli, running, "audit", *tenant, "--limit", "1")
    assert before.returncode == 0 and "wraps 1 workflow keys" in before.stdout, before.stderr
    assert rotated.returncode == 0 and "1 workflow keys re-wrapped" in rotated.stdout
    assert after.stdout.splitlines()[1].startswith(old) and "wraps 0" in after.stdout
    assert too_soon.returncode == 1 and "retire after that" in too_soon.stderr
    assert "temporal-key.rotate" in audit.stdout


async def test_a_new_kek_rewraps_the_tenant_keys(running: Stack, settings_kek: Kek) -> None:
    saved = await running.service.save(running.principal, TEXT)
    await running.wait_status(saved.id)
    history = await running.client.get_workflow_handle(saved.workflow_id).fetch_history()
    sealed = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    new = parse_kek(new_kek_text(), "test")
    admin = KeyAdministration(Keyring(running.pool, settings_kek), running.principal.tenant_id)
    try:
        assert await admin.rewrap_under(new) == 1
        assert await admin.rewrap_under(new) == 0  # can be run again
        opened = await decrypt(Keyring(running.pool, new), sealed, Envelope.read(sealed))
        assert MARKER.encode() in opened.data
        with pytest.raises(WrongKek):
            await decrypt(Keyring(running.pool, settings_kek), sealed, Envelope.read(sealed))
    finally:  # back under the test session's KEK: other tests' workers see every tenant
        back = KeyAdministration(Keyring(running.pool, new), running.principal.tenant_id)
        await back.rewrap_under(settings_kek)
