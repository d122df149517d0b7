"""The ingestion workflow's durability: transient failures are retried, committed once."""

from __future__ import annotations

import json

import asyncpg
import pytest
from google.protobuf import json_format
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext
from temporalio.worker import Worker

from activities.consolidate import ConsolidationActivities
from activities.ingest import IngestActivities
from team_memory_core.embedder import BatchingEmbedder
from team_memory_core.models.decisions import IngestResult
from team_memory_core.models.memories import IngestInput, MemoryStatus
from tests.conftest import Stack
from tests.temporal_cli import payloads
from workflows.ingest import IngestMemory

pytestmark = pytest.mark.anyio


async def test_transient_activity_failure_is_retried_and_committed_once(stack: Stack) -> None:
    real = IngestActivities(pool=stack.pool, settings=stack.settings,
                            embedder=BatchingEmbedder(stack.embedder, window_ms=1, max_batch=8))
    attempts: list[int] = []

    @activity.defn(name="ingest_memory")
    async def flaky_ingest(item: IngestInput) -> IngestResult | None:
        attempts.append(activity.info().attempt)
        if activity.info().attempt < 3:
            raise ConnectionResetError("embedding backend went away")
        return await real.ingest_memory(item)

    schedules = ConsolidationActivities(pool=stack.pool, embedder=real.embedder,
                                        settings=stack.settings, client=stack.client)
    worker = Worker(stack.client, task_queue=stack.settings.task_queue,
                    workflows=[IngestMemory],
                    activities=[flaky_ingest, real.decide_memory, real.commit_memory,
                                schedules.ensure_project_schedule])
    async with worker, stack.relay():
        saved = await stack.service.save(stack.principal, "Retries use jittered backoff")
        assert await stack.wait_status(saved.id) is MemoryStatus.ACTIVE
        handle = stack.client.get_workflow_handle(saved.workflow_id, result_type=IngestResult)
        result = await handle.result()
    assert attempts == [1, 2, 3]
    assert result.status is MemoryStatus.ACTIVE
    report = await stack.service.status(stack.principal, saved.id)
    assert [e.event for e in report.history] == ["added"]


async def test_workflow_history_carries_no_embedding(running: Stack) -> None:
    saved = await running.service.save(running.principal, "Cache keys include the tenant id")
    await running.wait_status(saved.id)
    handle = running.client.get_workflow_handle(saved.workflow_id)
    await handle.result()
    history = await handle.fetch_history()
    codec = running.client.data_converter.payload_codec
    assert codec is not None
    sealed = [json_format.ParseDict(found, Payload())
              for _, found in payloads(json.loads(history.to_json()))]
    opened = await codec.with_context(WorkflowSerializationContext(  # type: ignore[attr-defined]
        namespace=running.client.namespace, workflow_id=saved.workflow_id)).decode(sealed)
    size = sum(len(payload.data) for payload in opened)
    # Everything the workflow wrote, decrypted: 384 floats would be ~7 KB of JSON on their own.
    assert len(opened) >= 5 and size < 5_000, size
    described = await handle.describe()
    assert described.search_attributes["Decision"] == ["add"]
    assert described.search_attributes["Project"] == ["default"]
    memo = await described.memo()
    assert memo["preview"] == "Cache keys include the tenant id"
    assert memo["memory_id"] == str(saved.id)


async def test_an_ingested_vector_stays_in_its_row(running: Stack,
                                                  admin_pool: asyncpg.Pool) -> None:
    """Each ingestion's dedupe scan reads the project's vectors: in the row, not in the TOAST
    table, where reading them cost 4x the CPU (sql/012). The texts make rows of about 2.5 KB,
    over PostgreSQL's default TOAST target."""
    toast = await admin_pool.fetchval(
        "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'memories'::regclass")
    chunks = f"SELECT count(*) FROM {toast}"
    before = await admin_pool.fetchval(chunks)
    saved = [await running.service.save(running.principal, f"Service {i} retries failed calls "
                                        "with jittered exponential backoff, at most five "
                                        "times, because the payment provider rate-limits "
                                        "bursts and the on-call rota asked for it. " * 2)
             for i in range(6)]
    for memory in saved:
        assert await running.wait_status(memory.id) is MemoryStatus.ACTIVE
    assert await admin_pool.fetchval(chunks) == before


async def test_redacted_secret_is_stored_redacted(running: Stack) -> None:
    key = "sk-ant-api03-" + "A1b2C3d4" * 8
    saved = await running.service.save(running.principal,
                                       f"The staging Anthropic key is {key}, rotate monthly")
    await running.wait_status(saved.id)
    memory = await running.service.get(running.principal, saved.id)
    report = await running.service.status(running.principal, saved.id)
    assert key not in memory.content
    assert "[REDACTED:anthropic_key]" in memory.content
    assert saved.redacted == ["anthropic_key"]
    assert [e.event for e in report.history] == ["redacted", "added"]
    workflow = running.client.get_workflow_handle(saved.workflow_id)
    assert key not in (await workflow.fetch_history()).to_json()


async def test_row_lost_before_commit_is_recreated_by_the_workflow(stack: Stack) -> None:
    """If the server's pending row never landed, the workflow still commits the memory."""
    from team_memory_core.contract import ingest_workflow_id
    from team_memory_core.models.memories import Category, content_hash, memory_id_for
    from team_memory_core.temporal import keyring_of

    text = "Background jobs are idempotent by design"
    digest = content_hash(text)
    item = IngestInput(
        memory_id=memory_id_for(stack.principal.tenant_id, "default", digest),
        tenant_id=stack.principal.tenant_id, project="default", content=text,
        category=Category.GENERAL, importance=2, tags=[], content_hash=digest,
        occurred_at="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
    )
    workflow_id = ingest_workflow_id(stack.principal.tenant_name, "default", digest, 0)
    await keyring_of(stack.client).prepare(stack.principal.tenant_id, workflow_id)
    async with stack.worker():
        await stack.client.execute_workflow(IngestMemory.run, item, id=workflow_id,
                                            task_queue=stack.settings.task_queue)
    memory = await stack.service.get(stack.principal, item.memory_id)
    assert memory.status is MemoryStatus.ACTIVE
    assert memory.content == text
