"""Nothing acknowledged is lost: crashes, outages and shutdowns during ingestion.

Real processes are killed and real services stopped; every test checks that each saved
memory ends committed exactly once (one row, one decision event), not merely that it ran.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg
import httpx2
import pytest
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr
from temporalio.client import Client

from mcp_server.memories import MemoryService
from team_memory import embedded
from team_memory_core.llm.client import Distiller
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from team_memory_core.settings import Settings
from team_memory_core.store.pool import create_pool, tenant_tx
from team_memory_core.temporal import connect
from team_memory_core.tenants import create_key, ensure_tenant
from tests.conftest import Services, Stack, new_tenant
from tests.mcp_server.test_http import client_for
from tests.processes import ROOT, child_env
from tests.support.anthropic_server import FakeAnthropic
from tests.support.faults import dedicated_postgres
from workflows.worker import running_worker

pytestmark = pytest.mark.anyio

_DECISION_EVENTS = ("added", "duplicate", "merged_into")
_TOPICS = ["PostgreSQL", "Kafka", "Redis", "gRPC", "Svelte", "Terraform", "OAuth", "S3",
           "Temporal", "pgvector", "Kubernetes", "Prometheus", "Nginx", "Celery", "GraphQL"]


def fact(i: int) -> str:
    topic = _TOPICS[i % len(_TOPICS)]
    return f"Decision {i}: the {topic} setup for service number {i * 7919 % 10007} is final"


# --- subprocesses ---------------------------------------------------------------------------


def spawn(args: list[str], settings: Settings, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """`python -m team_memory ARGS` against the given settings' services and task queue."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "team_memory", *args],
                                env=child_env(settings, **env), cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


@contextmanager
def worker_process(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = spawn(["worker"], settings, log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# --- checks ---------------------------------------------------------------------------------


async def committed(pool: asyncpg.Pool, principal: Principal) -> int:
    async with tenant_tx(pool, principal.tenant_id) as conn:
        return int(await conn.fetchval(
            "SELECT count(*) FROM memories WHERE status <> 'pending'"))


async def wait_committed(pool: asyncpg.Pool, principal: Principal, at_least: int,
                         timeout: float) -> None:
    with anyio.fail_after(timeout):
        while await committed(pool, principal) < at_least:
            await asyncio.sleep(0.05)


async def assert_committed_once(pool: asyncpg.Pool, principal: Principal,
                                ids: set[uuid.UUID]) -> None:
    """Every id is one committed row with exactly one decision event; nothing else exists."""
    async with tenant_tx(pool, principal.tenant_id) as conn:
        rows = await conn.fetch("SELECT id, status FROM memories")
        events = await conn.fetch(
            "SELECT memory_id, count(*) AS n FROM memory_events WHERE event = ANY($1) "
            "GROUP BY memory_id", list(_DECISION_EVENTS))
    assert {row["id"] for row in rows} == ids
    assert all(row["status"] != MemoryStatus.PENDING for row in rows)
    decided = {row["memory_id"]: row["n"] for row in events}
    assert decided.keys() == ids
    assert set(decided.values()) == {1}, "a memory was decided more than once"


async def save_many(service: MemoryService, principal: Principal, count: int,
                    first: int = 0) -> set[uuid.UUID]:
    saved = [await service.save(principal, fact(first + i)) for i in range(count)]
    return {s.id for s in saved}


# --- worker crashes and shutdowns -----------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_worker_stopped_mid_ingestion_loses_and_duplicates_nothing(
    stack: Stack, tmp_path: Path, sig: signal.Signals
) -> None:
    # SIGTERM lets in-flight workflow tasks finish, and the worker holds up to 64 at once: more
    # memories than that, so some are still left for the second worker.
    ids = await save_many(stack.service, stack.principal, 60 if sig == signal.SIGKILL else 150)
    with worker_process(stack.settings, tmp_path / "worker1.log") as first:
        await wait_committed(stack.pool, stack.principal, 1, timeout=60)
        first.send_signal(sig)
        code = await anyio.to_thread.run_sync(first.wait, 30)
    done = await committed(stack.pool, stack.principal)
    assert done < len(ids), "the worker finished before it was stopped: nothing was tested"
    if sig == signal.SIGTERM:
        assert code == 0, (tmp_path / "worker1.log").read_text()
    with worker_process(stack.settings, tmp_path / "worker2.log"):
        await wait_committed(stack.pool, stack.principal, len(ids), timeout=90)
    await assert_committed_once(stack.pool, stack.principal, ids)


# --- PostgreSQL outage ----------------------------------------------------------------------


async def test_postgres_down_for_ten_seconds_mid_ingestion(
    services: Services, embedder: object
) -> None:
    async with dedicated_postgres(services) as (postgres, settings):
        admin = await create_pool(postgres.admin_url, min_size=1, max_size=2)
        pool = await create_pool(postgres.app_url, min_size=1, max_size=8)
        try:
            # Its payload keys live in this database too.
            temporal_client = await connect(settings, pool)
            principal = await _tenant(admin)
            service = MemoryService(settings=settings, pool=pool, temporal=temporal_client,
                                    embedder=embedder)  # type: ignore[arg-type]
            # Enough that the ingestion (one step per memory, ~20/s here) spans the outage.
            ids = await save_many(service, principal, 200)
            async with running_worker(temporal_client, settings, pool, embedder,  # type: ignore[arg-type]
                                      None):
                await wait_committed(pool, principal, 1, timeout=30)
                await anyio.to_thread.run_sync(lambda: postgres.restart(down_seconds=10))
                assert await committed(pool, principal) < len(ids), "finished before outage"
                await wait_committed(pool, principal, len(ids), timeout=120)
            await assert_committed_once(pool, principal, ids)
        finally:
            await pool.close()
            await admin.close()


async def _tenant(admin: asyncpg.Pool) -> Principal:
    name = f"t-{uuid.uuid4().hex[:10]}"
    tenant_id = await ensure_tenant(admin, name)
    issued = await create_key(admin, name)
    return Principal(tenant_id=tenant_id, tenant_name=name, key_id=issued.key_id)


# --- Temporal restart -----------------------------------------------------------------------


async def wait_completed(client: Client, workflow_ids: list[str],
                         timeout: float) -> list[datetime]:
    """Wait for every workflow to complete; their close times."""
    with anyio.fail_after(timeout):
        for workflow_id in workflow_ids:
            await client.get_workflow_handle(workflow_id).result()
        described = [await client.get_workflow_handle(w).describe() for w in workflow_ids]
    return [d.close_time for d in described if d.close_time is not None]


async def test_persistent_temporal_restarted_mid_ingestion(
    services: Services, tmp_path: Path, app_pool: asyncpg.Pool, admin_pool: asyncpg.Pool,
    embedder: object,
) -> None:
    port = embedded.free_port()
    log = (tmp_path / "temporal.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return embedded.start_temporal(db_file=tmp_path / "temporal.db", port=port,
                                       ui_port=None, log_file=log)

    server = await anyio.to_thread.run_sync(start)
    try:
        settings = services.settings(temporal_address=f"127.0.0.1:{port}")
        client = await connect(settings, app_pool)
        principal, _ = await new_tenant(admin_pool)
        service = MemoryService(settings=settings, pool=app_pool, temporal=client,
                                embedder=embedder)  # type: ignore[arg-type]
        first = [await service.save(principal, fact(i)) for i in range(40)]
        async with running_worker(client, settings, app_pool, embedder, None):  # type: ignore[arg-type]
            await wait_committed(app_pool, principal, 1, timeout=30)
            # Judged before the stop: local activities let the worker commit the memories it
            # already holds while the server is going down, so a count taken after says nothing.
            assert await committed(app_pool, principal) < len(first), "finished before restart"
            stopped_at = datetime.now(UTC)
            try:
                await anyio.to_thread.run_sync(embedded.stop_process, server)
            finally:
                # Even when a step fails: with its server gone the worker's shutdown hangs.
                server = await anyio.to_thread.run_sync(start)
            later = [await service.save(principal, fact(1000 + i)) for i in range(5)]
            saved = first + later
            # Every workflow completes, so the ones replayed after the restart are checked too.
            closed = await wait_completed(client, [s.workflow_id for s in saved], timeout=90)
        await assert_committed_once(app_pool, principal, {s.id for s in saved})
        assert max(closed[:len(first)]) > stopped_at, "all done before the restart: untested"
    finally:
        await anyio.to_thread.run_sync(embedded.stop_process, server)
        log.close()


# --- LLM outage -----------------------------------------------------------------------------


async def test_llm_answering_500s_keeps_the_memory(stack: Stack) -> None:
    with FakeAnthropic() as fake:  # nothing scripted: every call gets a 500
        settings = stack.settings.model_copy(update={
            "anthropic_api_key": SecretStr("sk-ant-test"), "anthropic_base_url": fake.base_url})
        distiller = Distiller.from_settings(settings)
        assert distiller is not None
        async with stack.worker(distiller=distiller):
            # The project's first memory: its screening call fails too (kept after retries).
            first = await stack.service.save(stack.principal, "We deploy with blue-green "
                                             "switches behind the load balancer")
            assert await stack.wait_status(first.id, timeout=120) is MemoryStatus.ACTIVE
            second = await stack.service.save(stack.principal, "Deploys use blue-green "
                                              "switching behind the load balancer, always")
            assert await stack.wait_status(second.id, timeout=120) is MemoryStatus.ACTIVE
        await distiller.aclose()
        assert len(fake.requests) >= 2, "the model was never asked: the outage was not tested"
    report = await stack.service.status(stack.principal, second.id)
    assert [e.event for e in report.history] == ["kept_without_decision"]
    assert "LLMUnavailable" in (report.history[0].reason or "")


# --- MCP server under load and on SIGTERM ---------------------------------------------------


@contextmanager
def mcp_server_process(settings: Settings, log: Path) -> Iterator[tuple[subprocess.Popen[bytes],
                                                                        str]]:
    port = embedded.free_port()
    # One key drives the whole load here; the per-key rate limit is tested on its own.
    process = spawn(["serve", "--transport", "http", "--mcp-port", str(port)], settings, log,
                    TEAM_MEMORY_RATE_LIMIT_PER_MINUTE="0")
    try:
        embedded.wait_for_port(port, 60, process, "the MCP server")
        yield process, f"http://127.0.0.1:{port}/mcp"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_fifty_clients_saving_and_searching_lose_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    """50 MCP clients over HTTP for 30 s, mixing saves and searches."""
    acked: set[uuid.UUID] = set()
    errors: list[str] = []
    with worker_process(stack.settings, tmp_path / "worker.log"), \
            mcp_server_process(stack.settings, tmp_path / "serve.log") as (_, url):
        deadline = time.monotonic() + 30

        async def session(n: int) -> None:
            # A generous client timeout: on a shared 2-core CI box 50 sessions queue for CPU.
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {stack.api_key}"},
                                      timeout=120)
            async with McpClient(streamable_http_client(url, http_client=http)) as client:
                i = 0
                while i < 2 or time.monotonic() < deadline:  # one save and one search at least
                    tool, args = (("save_memory", {"content": fact(n * 1000 + i)}) if i % 2 == 0
                                  else ("search_memory", {"query": _TOPICS[i % 15]}))
                    result = await client.call_tool(tool, args)
                    if result.is_error:
                        errors.append(str(result.content))
                    elif tool == "save_memory":
                        acked.add(uuid.UUID(result.structured_content["id"]))  # type: ignore[index]
                    i += 1

        await asyncio.gather(*(session(n) for n in range(50)))
        assert errors == []
        assert len(acked) >= 50
        await wait_committed(stack.pool, stack.principal, len(acked), timeout=120)
    await assert_committed_once(stack.pool, stack.principal, acked)


async def test_sigterm_to_mcp_server_during_a_burst_commits_every_acknowledged_save(
    stack: Stack, tmp_path: Path
) -> None:
    acked: set[uuid.UUID] = set()
    failed_after_stop = 0
    with mcp_server_process(stack.settings, tmp_path / "serve.log") as (server, url):

        async def session(n: int) -> None:
            nonlocal failed_after_stop
            async with client_for(url, stack.api_key) as client:
                for i in range(200):
                    try:
                        result = await client.call_tool("save_memory",
                                                        {"content": fact(n * 1000 + i)})
                    except Exception:  # the server is gone: later calls cannot be acked
                        failed_after_stop += 1
                        return
                    if result.is_error:
                        failed_after_stop += 1
                        return
                    acked.add(uuid.UUID(result.structured_content["id"]))  # type: ignore[index]

        async def stop_soon() -> None:
            while len(acked) < 20:
                await asyncio.sleep(0.02)
            server.send_signal(signal.SIGTERM)

        with anyio.fail_after(90):
            await asyncio.gather(stop_soon(), *(session(n) for n in range(10)),
                                 return_exceptions=True)
        assert await anyio.to_thread.run_sync(server.wait, 30) == 0
    assert len(acked) < 2000, "the server never stopped: nothing was tested"
    async with stack.worker():
        await wait_committed(stack.pool, stack.principal, len(acked), timeout=90)
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        stored = {r["id"] for r in await conn.fetch("SELECT id FROM memories")}
    # Calls cut by the shutdown may have written a row without the client hearing back:
    # those are committed too; what must never happen is an acknowledged save missing.
    assert acked <= stored
    await assert_committed_once(stack.pool, stack.principal, stored)
