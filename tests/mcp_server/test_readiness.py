"""/readyz follows a real worker process: ready while it runs, 503 within seconds of its death."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from mcp_server.app import http_app
from team_memory_core.temporal import describe_workers
from tests.conftest import Stack
from tests.processes import child_env, team_memory

pytestmark = pytest.mark.anyio


async def ready_status(http: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    response = await http.get("/readyz")
    return response.status_code, response.json()["checks"]


async def wait_for(http: httpx.AsyncClient, code: int, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        status, checks = await ready_status(http)
        if status == code:
            return checks
        assert time.monotonic() < deadline, f"/readyz still {status} {checks}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGKILL])
async def test_readyz_fails_promptly_when_the_worker_dies(stack: Stack, stop: int) -> None:
    queue = stack.settings.task_queue
    transport = httpx.ASGITransport(app=http_app(stack.service))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        status, checks = await ready_status(http)
        assert status == 503 and checks["worker"].startswith("error"), checks
        with team_memory("worker", env=child_env(stack.settings)) as worker:
            checks = await wait_for(http, 200, timeout=60)
            assert checks == {"database": "ok", "temporal": "ok", "worker": "ok"}
            while not (await describe_workers(stack.client, queue)).live_workers:
                await asyncio.sleep(0.1)  # killed after its heartbeats began: the usual case
            worker.send_signal(stop)
            died = time.monotonic()
            checks = await wait_for(http, 503, timeout=10)
            noticed = time.monotonic() - died
    assert checks["database"] == "ok" and checks["temporal"] == "ok"
    assert checks["worker"].startswith("error"), checks
    print(f"/readyz noticed the {signal.Signals(stop).name} after {noticed:.1f} s")
