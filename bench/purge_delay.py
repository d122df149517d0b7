"""How long Temporal still serves a purged memory's history, and that it is sealed meanwhile.

python -m bench.purge_delay [N]: on a fresh `team-memory up`, save and commit N memories, purge
them one after the other, and time, for each, how long the dev server keeps answering
GetWorkflowExecutionHistory (what `temporal workflow show` calls) for its ingestion workflow.
Each history is also read right after its purge: its payloads must not open with the keys.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.corpus import memory_text
from bench.stack import in_process, start_stack
from bench.stats import Table
from mcp_server.memories import MemoryService
from team_memory_core.models.principal import Principal
from team_memory_core.payload_codec import Envelope, decrypt, is_encrypted
from team_memory_core.temporal import keyring_of
from team_memory_core.temporal_keys import KeyUnavailable

POLL_S = 0.1


async def measure(count: int) -> str:
    stack = start_stack()
    try:
        local = await in_process(stack)
        delays, sealed = [], 0
        for i in range(count):
            delay, opened = await _purge_and_wait(local.service, local.client, local.principal, i)
            delays.append(delay)
            sealed += not opened
        await local.pool.close()
        table = Table()
        table.latency("purge -> history no longer served (GetWorkflowExecutionHistory)", delays)
        table.add("histories readable right after purge", f"{count - sealed} of {count}")
        return table.markdown()
    finally:
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)


async def _purge_and_wait(service: MemoryService, client: Client, principal: Principal,
                          i: int) -> tuple[float, bool]:
    saved = await service.save(principal, memory_text(1_000_000 + i))
    await client.get_workflow_handle(saved.workflow_id).result()
    await service.purge(principal, saved.id, "purge delay benchmark")
    purged_at = time.perf_counter()
    opened = await _opens(client, saved.workflow_id)
    while await _served(client, saved.workflow_id):
        await asyncio.sleep(POLL_S)
    return time.perf_counter() - purged_at, opened


async def _history(client: Client, workflow_id: str) -> list[object]:
    response = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(namespace=client.namespace,
                                           execution=WorkflowExecution(workflow_id=workflow_id)))
    return list(response.history.events)


async def _served(client: Client, workflow_id: str) -> bool:
    try:
        await _history(client, workflow_id)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _opens(client: Client, workflow_id: str) -> bool:
    """Whether the (possibly still served) history's input opens with any key we hold."""
    try:
        events = await _history(client, workflow_id)
    except RPCError:
        return False
    payload = events[0].workflow_execution_started_event_attributes.input.payloads[0]  # type: ignore[attr-defined]
    assert is_encrypted(payload)
    try:
        await decrypt(keyring_of(client), payload, Envelope.read(payload))
    except KeyUnavailable:
        return False
    return True


if __name__ == "__main__":
    print(asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
