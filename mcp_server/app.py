"""Running the MCP server: over streamable HTTP (with /healthz and /readyz) or stdio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures import Future

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from mcp_server.auth import ApiKeyVerifier, Authenticator, AuthGate, auth_settings
from mcp_server.browser_api import add_browser_routes
from mcp_server.capture import CaptureService
from mcp_server.codec import add_codec_routes
from mcp_server.hooks import register_hook_routes
from mcp_server.memories import MemoryService
from mcp_server.outages import OutageAnswer
from mcp_server.server import create_server
from mcp_server.workspace import WorkspaceProjectMiddleware
from team_memory_core.active_model import load_database_model
from team_memory_core.embedder import QUERY_TUNING, Embedder, load_in_background
from team_memory_core.health import WORKER_UNKNOWN, Check, check_worker, ready
from team_memory_core.heap import freeze_start_up_objects
from team_memory_core.logs import keep_queries_out_of_server_logs
from team_memory_core.models.principal import Principal
from team_memory_core.project_identity import project_for
from team_memory_core.settings import Settings
from team_memory_core.store.pool import create_app_pool, ping
from team_memory_core.temporal import connect
from team_memory_core.tenants import authenticate, record_auth_failure

log = logging.getLogger("team_memory.mcp")
READY_TIMEOUT_S = 2


@contextlib.asynccontextmanager
async def open_service(
    settings: Settings, embedder: Future[Embedder] | None = None
) -> AsyncIterator[MemoryService]:
    """``embedder``: a model already loading (`load_in_background`), else it starts loading now,
    while the pool and Temporal connect."""
    loading = asyncio.wrap_future(embedder or load_in_background(settings))
    pool = await create_app_pool(settings)
    try:
        client = await connect(settings, pool)
        model = await load_database_model(pool, settings, await loading, QUERY_TUNING)
        yield MemoryService(settings=settings, pool=pool, temporal=client, embedder=model)
    finally:
        if not loading.done():
            loading.cancel()
        await pool.close()


async def stdio_principal(service: MemoryService) -> Principal:
    key = service.settings.api_key
    if key is None:
        raise SystemExit("stdio transport needs TEAM_MEMORY_API_KEY (see `team-memory key create`)")
    principal = await authenticate(service.pool, key.get_secret_value())
    if principal is None:
        await record_auth_failure(service.pool, key.get_secret_value(), "stdio")
        raise SystemExit("TEAM_MEMORY_API_KEY is not a valid, unrevoked key")
    # An MCP client starts a stdio server in the directory it works in: that repository is
    # the default project, as for the Claude Code hooks.
    return principal.model_copy(update={"workspace_project": project_for(os.getcwd())})


async def serve_stdio(settings: Settings, embedder: Future[Embedder] | None = None) -> None:
    async with open_service(settings, embedder) as service:
        server = create_server(service, default_principal=await stdio_principal(service))
        await server.run_stdio_async()


def http_app(service: MemoryService) -> Starlette:
    settings = service.settings
    public = f"http://{settings.mcp_host}:{settings.mcp_port}"
    authenticator = Authenticator(service.pool, service.limiter)
    server = create_server(service, token_verifier=ApiKeyVerifier(),
                           auth=auth_settings(public))

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        checks = await readiness(service)
        ok = ready(checks)
        return JSONResponse({"status": "ok" if ok else "unavailable",
                             "checks": {name: check.probe for name, check in checks.items()}},
                            status_code=200 if ok else 503)

    server.custom_route("/healthz", methods=["GET"])(healthz)
    server.custom_route("/readyz", methods=["GET"])(readyz)
    register_hook_routes(server, CaptureService(service))
    add_browser_routes(server, service)
    add_codec_routes(server, service, authenticator)
    app = server.streamable_http_app(
        # Every tool answers once, with no progress or log notifications on the way: a plain
        # JSON response instead of a one-event SSE stream per call (search p50 60 -> 37-43 ms
        # through MCP under load; docs/benchmarks.md). The GET stream for server-initiated
        # messages is unchanged.
        json_response=True,
        transport_security=TransportSecuritySettings(
            allowed_hosts=settings.allowed_hosts, allowed_origins=settings.allowed_origins
        ),
        host=settings.mcp_host,
    )
    # Added last = outermost: the workspace is known before the gate hands out the principal,
    # and an outage anywhere below (the gate's key lookup included) is answered 503.
    app.add_middleware(AuthGate, authenticator=authenticator)
    app.add_middleware(WorkspaceProjectMiddleware)
    app.add_middleware(OutageAnswer)
    return app


async def readiness(service: MemoryService) -> dict[str, Check]:
    checks: dict[str, Check] = {}
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            await ping(service.pool)
        checks["database"] = Check.passed()
    except Exception as error:  # any failure means not ready; report it, don't crash
        checks["database"] = Check.failed(error)
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            checks["worker"] = await check_worker(service.temporal, service.settings.task_queue)
        checks["temporal"] = Check.passed()
    except Exception as error:  # same: a readiness probe reports, it does not raise
        checks["temporal"] = Check.failed(error)
        checks["worker"] = WORKER_UNKNOWN
    return checks


async def serve_http(settings: Settings, embedder: Future[Embedder] | None = None) -> None:
    async with open_service(settings, embedder) as service:
        app = http_app(service)
        config = uvicorn.Config(app, host=settings.mcp_host, port=settings.mcp_port,
                                log_level=settings.log_level.lower(), lifespan="on",
                                timeout_graceful_shutdown=15,
                                # Longer than a client's or load balancer's idle pool: a
                                # connection closed by us as a request goes out is an error.
                                timeout_keep_alive=75)
        keep_queries_out_of_server_logs()  # uvicorn.Config has just (re)configured its loggers
        log.info("MCP server listening on %s", settings.mcp_url)
        _return_after_graceful_shutdown()
        freeze_start_up_objects()
        await uvicorn.Server(config).serve()


def _return_after_graceful_shutdown() -> None:
    """uvicorn finishes in-flight requests on SIGTERM/SIGINT, then re-raises the signal with
    the handler it found installed: with this one, serve() returns and the pool closes."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: None)
