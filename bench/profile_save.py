"""Where a save's time goes: the same save measured layer by layer on a fresh stack.

python -m bench.profile_save [N]: sequential, one client, N samples per layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import PayloadCodec, WorkflowSerializationContext

from bench.corpus import memory_text
from bench.run import call, client_for
from bench.stack import in_process, start_stack
from bench.stats import Table
from team_memory_core.models.memories import Category, IngestInput, content_hash
from team_memory_core.models.principal import Principal
from team_memory_core.payload_codec import EncryptionCodec
from team_memory_core.rules.injection import flags_of
from team_memory_core.rules.redaction import redact
from team_memory_core.store.memories import insert_pending
from team_memory_core.store.pool import tenant_tx
from team_memory_core.temporal import keyring_of
from team_memory_core.tenants import authenticate


async def timed(samples: int, one: Callable[[int], Awaitable[object]]) -> list[float]:
    times = []
    for i in range(samples):
        started = time.perf_counter()
        await one(i)
        times.append(time.perf_counter() - started)
    return times


async def profile(samples: int) -> str:
    stack = start_stack()
    try:
        local = await in_process(stack)
        service, principal, pool, client = local.service, local.principal, local.pool, \
            local.client
        table = Table()
        table.latency("redact (regexes and entropy scan)",
                      await timed(samples, lambda i: asyncio.sleep(0, redact(_text("r", i)))))
        table.latency("API key lookup (one query, per HTTP request)",
                      await timed(samples, lambda i: authenticate(pool, stack.api_key)))
        table.latency("tenant transaction + insert pending row (rolled back)",
                      await timed(samples, lambda i: _insert(pool, principal, _text("i", i))))
        keyring = keyring_of(client)
        table.latency("relay, not the save: payload key of a new workflow (own transaction)",
                      await timed(samples, lambda i: keyring.prepare(
                          principal.tenant_id, f"ingest/local/p/{uuid.uuid4().hex[:24]}")))
        codec = _codec(client, principal, "ingest/local/p/profile")
        await keyring.prepare(principal.tenant_id, "ingest/local/p/profile")
        table.latency("payload codec: encrypt + decrypt one ingestion input (key cached)",
                      await timed(samples * 10, lambda i: _round_trip(codec, _text("c", i))))
        table.latency("relay, not the save: Temporal start_workflow (queue without a worker)",
                      await timed(samples, lambda i: client.start_workflow(
                          "IngestMemory", id=f"profile-{uuid.uuid4()}",
                          task_queue="profile-no-worker")))
        table.latency("MemoryService.save in process (one transaction: pending row, outbox "
                      "row, audit)",
                      await timed(samples, lambda i: service.save(principal, _text("s", i))))
        async with client_for(stack.mcp_url, stack.api_key) as mcp:
            table.latency("save_memory over streamable HTTP (+ MCP, auth, JSON)",
                          await timed(samples, lambda i: call(mcp, "save_memory",
                                                              content=_text("h", i))))
        await pool.close()
        return table.markdown()
    finally:
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)


def _text(tag: str, i: int) -> str:
    return memory_text(hash((tag, i)) % 10**9)


def _codec(client: Client, principal: Principal, workflow_id: str) -> PayloadCodec:
    codec = client.data_converter.payload_codec
    assert isinstance(codec, EncryptionCodec)
    return codec.with_context(WorkflowSerializationContext(namespace=client.namespace,
                                                           workflow_id=workflow_id))


async def _round_trip(codec: PayloadCodec, text: str) -> None:
    item = IngestInput(memory_id=uuid.uuid4(), tenant_id=uuid.uuid4(), project="p",
                       content=text, category=Category.GENERAL, importance=1, tags=[],
                       content_hash=content_hash(text), occurred_at=datetime.now(UTC))
    payloads = PydanticPayloadConverter().to_payloads([item])
    await codec.decode(await codec.encode(payloads))


class _Rollback(Exception):
    pass


async def _insert(pool: asyncpg.Pool, principal: Principal, text: str) -> None:
    item = IngestInput(memory_id=uuid.uuid4(), tenant_id=principal.tenant_id, project="p",
                       content=text, category=Category.GENERAL, importance=1, tags=[],
                       content_hash=content_hash(text), occurred_at=datetime.now(UTC))
    with contextlib.suppress(_Rollback):
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await insert_pending(conn, item, flags_of(text))
            raise _Rollback


if __name__ == "__main__":
    print(asyncio.run(profile(int(sys.argv[1]) if len(sys.argv) > 1 else 100)))
