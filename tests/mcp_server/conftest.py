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
from tests.conftest import Stack, new_member, new_tenant
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


TRUNK = "Every repository uses trunk-based development"
B_OWN = "The staging database is refreshed from production every Sunday night"


@dataclass
class TwoMembers:
    """Two members of one tenant: A (the stack's key) saved a personal memory holding the
    secret word, a project memory and a team memory; B saved a project memory."""

    a: Stack
    b: Principal
    b_key: str
    b_server: Any
    personal_id: str
    project_id: str
    team_id: str
    b_own_id: str

    def as_two_tenants(self) -> TwoTenants:
        """The shape the fuzz takes: what B must never reach is A's personal memory."""
        return TwoTenants(self.a, self.b, self.b_server, [self.personal_id], self.b_own_id)


@pytest.fixture
async def two_members(running: Stack, admin_pool: asyncpg.Pool) -> TwoMembers:
    b, b_key = await new_member(admin_pool, running.principal, "bob")
    b_server = create_server(running.service, default_principal=b)
    async with Client(running.server) as client:
        personal = await call(client, "save_memory", content=ONLY_A, importance=5,
                              scope="personal", files=["billing/keys.py"])
        project = await call(client, "save_memory", content=SHARED, importance=4)
        team = await call(client, "save_memory", content=TRUNK, scope="team", importance=4)
    async with Client(b_server) as client:
        b_own = await call(client, "save_memory", content=B_OWN, importance=4)
    ids = [personal["id"], project["id"], team["id"], b_own["id"]]
    for memory_id in ids:
        assert await running.wait_status(uuid.UUID(memory_id)) is MemoryStatus.ACTIVE
    return TwoMembers(running, b, b_key, b_server, *ids)
