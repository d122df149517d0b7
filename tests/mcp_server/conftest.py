"""Two tenants with overlapping content, for the isolation tests and the fuzz."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from mcp import Client

from mcp_server.server import create_server
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from tests.conftest import Stack, new_tenant
from tests.mcp_server.test_tools import call

SHARED = "We deploy every service with Argo CD onto the Kubernetes cluster"
ONLY_A = "The zebrafish billing cluster rotates its signing keys every 17 days"


@dataclass
class TwoTenants:
    a: Stack
    b: Principal
    b_server: Any
    a_ids: list[str]
    b_shared_id: str


@pytest.fixture
async def two(running: Stack, admin_pool: asyncpg.Pool) -> TwoTenants:
    b, _ = await new_tenant(admin_pool)
    b_server = create_server(running.service, default_principal=b)
    async with Client(running.server) as client:
        a_ids = [(await call(client, "save_memory", content=text, importance=4))["id"]
                 for text in (SHARED, ONLY_A)]
    async with Client(b_server) as client:
        b_shared = (await call(client, "save_memory", content=SHARED, importance=4))["id"]
    for memory_id in a_ids:
        assert await running.wait_status(uuid.UUID(memory_id)) is MemoryStatus.ACTIVE
    return TwoTenants(running, b, b_server, a_ids, b_shared)
