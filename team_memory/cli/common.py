"""What the command groups share, written once: settings, the database a command works on, its
pools, the operator acting for a tenant, and the way out after a Temporal client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import asyncpg
import typer

from mcp_server.errors import Dependency, unavailable
from team_memory import embedded
from team_memory.embedded import Database
from team_memory_core.erasure import Actor
from team_memory_core.logs import configure_logging
from team_memory_core.settings import Settings
from team_memory_core.store.pool import create_pool
from team_memory_core.tenants import UnknownTenant, operator, tenant_id_by_name

T = TypeVar("T")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory "
                                              "(default: TEAM_MEMORY_DATA_DIR or per-user)")]
TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant name")]


def load_settings(data_dir: Path | None = None, **overrides: Any) -> Settings:
    """The settings from the environment, with the options given on the command line."""
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    settings = Settings(**values)
    configure_logging(settings)
    return settings


def on_database(
    settings: Settings, work: Callable[[Database], Coroutine[Any, Any, T]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run ``work`` on the configured database, or the embedded one (started for it), in an
    event loop from ``loop_factory`` (default: asyncio's). A dependency that does not answer
    ends the command with a message saying which."""
    with embedded.database(settings) as database:
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                return runner.run(work(database))
        except Exception as error:
            outage = unavailable(error)
            if outage is None:
                raise
            typer.secho(str(outage), fg="red", err=True)
            if outage.dependency is Dependency.TEMPORAL:
                exit_after_temporal_client(1)
            raise typer.Exit(1) from None


@contextlib.asynccontextmanager
async def small_pool(url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool for one command (as the schema owner or the application role, by ``url``)."""
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def operator_pool(database: Database,
                        tenant: str) -> AsyncIterator[tuple[asyncpg.Pool, Actor]]:
    """(application pool, audit actor) for a tenant: data is read and written as the
    application role, so Row-Level Security applies to operators' commands too."""
    async with small_pool(database.admin_url) as admin:
        try:
            tenant_id = await tenant_id_by_name(admin, tenant)
        except UnknownTenant as error:
            fail(str(error))
    async with small_pool(database.app_url) as pool:
        yield pool, Actor(tenant_id=tenant_id, tenant_name=tenant, name=operator())


def as_operator(settings: Settings, tenant: str,
                work: Callable[[asyncpg.Pool, Actor], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` as the operator of ``tenant`` (see operator_pool)."""
    async def run(database: Database) -> T:
        async with operator_pool(database, tenant) as (pool, actor):
            return await work(pool, actor)

    return on_database(settings, run)


def fail(message: str) -> NoReturn:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


def exit_after_temporal_client(code: int = 0) -> NoReturn:
    """End a one-shot command that used a Temporal client without interpreter finalization:
    the SDK's Rust runtime can abort the process there ("PyGILState_Release ... finalizing",
    see the platform notes). Everything is written and every database handle closed by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
