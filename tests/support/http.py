"""The product's HTTP app served by uvicorn on a free 127.0.0.1 port, inside a test's loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

from mcp_server.app import http_app
from mcp_server.memories import MemoryService
from team_memory import embedded
from team_memory_core.settings import Settings
from tests.conftest import Stack


@contextlib.asynccontextmanager
async def serving_service(service: MemoryService) -> AsyncIterator[str]:
    """The app of ``service`` on its settings' port; yields the base URL."""
    port = service.settings.mcp_port
    server = uvicorn.Server(uvicorn.Config(http_app(service), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def serving_http(stack: Stack, **overrides: object) -> AsyncIterator[tuple[str, Settings]]:
    """(base URL, settings) of the app for ``stack``'s database and Temporal, with settings
    ``overrides`` (its port is free)."""
    settings = stack.settings.model_copy(update={"mcp_port": embedded.free_port(),
                                                 **overrides})
    service = MemoryService(settings=settings, pool=stack.pool, temporal=stack.client,
                            embedder=stack.embedder)
    async with serving_service(service) as base:
        yield base, settings
