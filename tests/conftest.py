"""Session fixtures: a real PostgreSQL + pgvector (pgserver) and a real Temporal dev server.

Each test gets its own tenant and task queue, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp.server import MCPServer
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from mcp_server.memories import MemoryService
from mcp_server.server import create_server
from team_memory import embedded
from team_memory_core.embedder import Embedder, LocalEmbedder
from team_memory_core.llm.client import Distiller
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from team_memory_core.outbox import OutboxRelay
from team_memory_core.settings import Settings
from team_memory_core.store.migrate import migrate
from team_memory_core.store.pool import create_pool
from team_memory_core.temporal import connect
from team_memory_core.tenants import add_member, create_key, ensure_tenant
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import MODEL, answer_screenings
from tests.support.turns import lock_dir, turn
from workflows.worker import running_worker

_RUNTIME_DIR = Path(tempfile.gettempdir()) / f"team-memory-tests-{os.getuid()}"
_RUNTIME_DIR.mkdir(mode=0o700, exist_ok=True)
_RUNTIME_DIR.chmod(0o700)  # as XDG requires (an older run may have left it 0755)
os.environ.setdefault("XDG_RUNTIME_DIR", str(_RUNTIME_DIR))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A base temp dir per checkout, outside any repository: runs in several checkouts at once
    must not prune each other's dirs under /tmp/pytest-of-<user> (pytest keeps the newest
    three), and test repositories must not nest in this one."""
    if config.option.basetemp is None:
        checkout = hashlib.sha256(str(config.rootpath).encode()).hexdigest()[:10]
        config.option.basetemp = str(Path(tempfile.gettempdir())
                                     / f"team-memory-pytest-{os.getuid()}-{checkout}")


@pytest.fixture(autouse=True)
def _turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``alone`` run while no other worker runs a test (tests/support/turns.py)."""
    alone = request.node.get_closest_marker("alone") is not None
    with turn(lock_dir(request.config), alone=alone):
        yield


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Services:
    data_dir: Path
    postgres: embedded.EmbeddedPostgres
    temporal_address: str

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": self.data_dir,
            "database_url": self.postgres.app_url,
            "database_admin_url": self.postgres.admin_url,
            "temporal_address": self.temporal_address,
            "task_queue": f"test-{uuid.uuid4().hex[:12]}",
            "anthropic_api_key": None,
            "embed_batch_window_ms": 2.0,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    data_dir = tmp_path_factory.mktemp("team-memory")
    postgres = embedded.start_postgres(data_dir / "pg")
    port = embedded.free_port()
    temporal = embedded.start_temporal(db_file=None, port=port, ui_port=None)
    try:
        services = Services(data_dir, postgres, f"127.0.0.1:{port}")
        asyncio.run(migrate(postgres.admin_url, services.settings()))
        yield services
    finally:
        embedded.stop_process(temporal)
        postgres.stop()


@pytest.fixture(scope="session")
def embedder(services: Services) -> Embedder:
    return LocalEmbedder(services.data_dir / "models", Settings().embedding_model)


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    """A scripted Anthropic Messages API on 127.0.0.1 (tests/support/anthropic_server.py);
    screenings of a project's first memory are answered as benign (tests/support/llm.py)."""
    with FakeAnthropic() as server:
        answer_screenings(server)
        yield server


@pytest.fixture
async def distiller(fake: FakeAnthropic) -> AsyncIterator[Distiller]:
    """The real anthropic client of the LLM tasks, talking to ``fake``."""
    async with Distiller(api_key="sk-test", model=MODEL, base_url=fake.base_url,
                         timeout_s=5) as client:
        yield client


@pytest.fixture
def settings(services: Services) -> Settings:
    return services.settings()


@pytest.fixture
async def admin_pool(services: Services) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(services.postgres.admin_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def app_pool(services: Services) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(services.postgres.app_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture
async def temporal_client(settings: Settings, app_pool: asyncpg.Pool) -> Client:
    return await connect(settings, app_pool)


async def new_tenant(admin_pool: asyncpg.Pool, **key_options: object) -> tuple[Principal, str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    tenant_id = await ensure_tenant(admin_pool, name)
    issued = await create_key(admin_pool, name, **key_options)  # type: ignore[arg-type]
    principal = Principal(tenant_id=tenant_id, tenant_name=name, key_id=issued.key_id,
                          project=key_options.get("project"),  # type: ignore[arg-type]
                          read_only=bool(key_options.get("read_only", False)),
                          member_id=issued.member_id,
                          member_name=str(key_options.get("member") or
                                          key_options.get("name") or "default"))
    return principal, issued.secret


async def new_member(admin_pool: asyncpg.Pool, of: Principal, name: str,
                     **key_options: object) -> tuple[Principal, str]:
    """Another member of ``of``'s tenant, with a key of its own."""
    await add_member(admin_pool, of.tenant_name, name)
    issued = await create_key(admin_pool, of.tenant_name, name=f"{name}-key", member=name,
                              **key_options)  # type: ignore[arg-type]
    principal = of.model_copy(update={
        "key_id": issued.key_id, "member_id": issued.member_id, "member_name": name,
        "project": key_options.get("project"),
        "read_only": bool(key_options.get("read_only", False))})
    return principal, issued.secret


@pytest.fixture
async def tenant(admin_pool: asyncpg.Pool) -> tuple[Principal, str]:
    return await new_tenant(admin_pool)


@pytest.fixture
def principal(tenant: tuple[Principal, str]) -> Principal:
    return tenant[0]


@dataclass
class Stack:
    settings: Settings
    service: MemoryService
    server: MCPServer
    principal: Principal
    api_key: str
    client: Client
    pool: asyncpg.Pool
    embedder: Embedder

    def worker(self, **options: object) -> AbstractAsyncContextManager[Worker]:
        """The worker and its outbox relay (saves made before it starts are started then)."""
        return running_worker(self.client, self.settings, self.pool, self.embedder,
                              options.get("distiller"))  # type: ignore[arg-type]

    def relay(self) -> AbstractAsyncContextManager[OutboxRelay]:
        """The outbox relay alone (for a test that runs a worker of its own)."""
        return OutboxRelay(pool=self.pool, client=self.client,
                           task_queue=self.settings.task_queue,
                           dsn=self.settings.database_url).running()

    async def started(self, workflow_id: str, timeout: float = 30) -> WorkflowHandle[Any, Any]:
        """The workflow's handle once the outbox relay has started it."""
        handle = self.client.get_workflow_handle(workflow_id)
        with anyio.fail_after(timeout):
            while True:
                try:
                    await handle.describe()
                    return handle
                except RPCError as error:
                    if error.status != RPCStatusCode.NOT_FOUND:
                        raise
                await asyncio.sleep(0.05)

    async def wait_status(self, memory_id: uuid.UUID, *wanted: MemoryStatus,
                          timeout: float = 20) -> MemoryStatus:
        """Poll until the memory leaves `pending` (or reaches one of ``wanted``)."""
        targets = set(wanted) or {s for s in MemoryStatus if s is not MemoryStatus.PENDING}
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            report = await self.service.status(self.principal, memory_id)
            if report.status in targets:
                return MemoryStatus(report.status)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{memory_id} still {report.status} after {timeout}s")
            await asyncio.sleep(0.05)


@pytest.fixture
async def stack(
    settings: Settings, app_pool: asyncpg.Pool, temporal_client: Client, embedder: Embedder,
    tenant: tuple[Principal, str],
) -> Stack:
    """Service + MCP server for a fresh tenant; no worker runs until a test starts one."""
    service = MemoryService(settings=settings, pool=app_pool, temporal=temporal_client,
                            embedder=embedder)
    principal, key = tenant
    return Stack(settings, service, create_server(service, default_principal=principal),
                 principal, key, temporal_client, app_pool, embedder)


@pytest.fixture
async def running(stack: Stack) -> AsyncIterator[Stack]:
    """The stack with a worker polling its task queue."""
    async with stack.worker():
        yield stack
