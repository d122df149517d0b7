"""Operators filter ingestions with the temporal CLI by the search attributes the save sets."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from team_memory.embedded import temporal_binary
from team_memory_core.models.memories import MemoryStatus
from tests.conftest import Stack

pytestmark = pytest.mark.anyio


def workflow_list(address: str, query: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [str(temporal_binary()), "workflow", "list", "--address", address, "--query", query,
         "--output", "json"], capture_output=True, text=True, timeout=60, check=True)
    listed = json.loads(result.stdout or "[]")
    return listed if isinstance(listed, list) else [listed]


async def test_ingestions_filter_by_tenant_project_and_decision(running: Stack) -> None:
    tenant = running.principal.tenant_name
    saved = {
        project: await running.service.save(running.principal, f"Release train for {project} "
                                            "leaves every second Monday", project=project)
        for project in ("billing", "search")
    }
    for result in saved.values():
        assert await running.wait_status(result.id) is MemoryStatus.ACTIVE
    address = running.settings.temporal_target
    query = f"TenantName='{tenant}' AND Project='billing' AND Decision='add'"
    for _ in range(100):  # visibility is eventually consistent
        listed = await asyncio.to_thread(workflow_list, address, query)
        if listed:
            break
        await asyncio.sleep(0.1)
    assert [item["execution"]["workflowId"] for item in listed] == [  # type: ignore[index]
        saved["billing"].workflow_id]
    assert saved["billing"].workflow_id == f"ingest/{tenant}/billing/" \
        + saved["billing"].workflow_id.rsplit("/", 1)[1]
    everything = await asyncio.to_thread(workflow_list, address, f"TenantName='{tenant}'")
    assert {item["execution"]["workflowId"] for item in everything} == {  # type: ignore[index]
        result.workflow_id for result in saved.values()}
