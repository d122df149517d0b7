"""`team-memory`: the command line that wires the parts together.

This module is the composition root: it is the one place in the shared package that starts
the role packages (mcp_server, workflows), and it imports them lazily, per command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer

from team_memory import embedded
from team_memory.db import create_pool
from team_memory.logs import configure_logging
from team_memory.migrate import migrate as apply_migrations
from team_memory.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Team Memory: long-term team memory for Claude over MCP.")
tenant_app = typer.Typer(no_args_is_help=True, help="Manage tenants.")
key_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")

LOCAL_TENANT = "local"
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory "
                                              "(default: TEAM_MEMORY_DATA_DIR or per-user)")]


def _settings(data_dir: Path | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    settings = Settings(**values)
    configure_logging(settings)
    return settings


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[tuple[str, str]]:
    """(admin_url, app_url): the configured database, or the embedded one in the data dir."""
    if not settings.embedded_postgres:
        assert settings.database_url is not None
        yield settings.database_admin_url or settings.database_url, settings.database_url
        return
    postgres = embedded.start_postgres(settings.data_dir / "pg")
    try:
        yield postgres.admin_url, postgres.app_url
    finally:
        postgres.stop()


@contextlib.asynccontextmanager
async def _admin_pool(admin_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(admin_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


# --- the whole stack --------------------------------------------------------------------------


@app.command()
def up(
    data_dir: DataDir = None,
    mcp_port: Annotated[int | None, typer.Option(help="MCP HTTP port")] = None,
    temporal_port: Annotated[int | None, typer.Option(help="Temporal dev server port")] = None,
    temporal_ui_port: Annotated[int | None, typer.Option(help="Temporal Web UI port")] = None,
) -> None:
    """Start everything on this machine: PostgreSQL, Temporal, the worker and the MCP server."""
    settings = _settings(data_dir, mcp_port=mcp_port, temporal_port=temporal_port,
                         temporal_ui_port=temporal_ui_port)
    from team_memory.stack import run_stack

    try:
        raise typer.Exit(run_stack(settings))
    except embedded.StackError as error:
        typer.secho(f"team-memory up: {error}", fg="red", err=True)
        raise typer.Exit(1) from None


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply the database migrations (idempotent)."""
    settings = _settings(data_dir)
    with _database(settings) as (admin_url, _):
        applied = asyncio.run(apply_migrations(admin_url, settings))
    typer.echo(f"applied migrations {applied}" if applied else "schema is up to date")


@app.command()
def worker(data_dir: DataDir = None) -> None:
    """Run a Temporal worker (ingestion and consolidation) against the configured services."""
    settings = _settings(data_dir)
    from workflows.worker import run_worker

    with _database(settings) as (_, app_url):
        asyncio.run(run_worker(settings.model_copy(update={"database_url": app_url})))


@app.command()
def serve(
    data_dir: DataDir = None,
    transport: Annotated[str, typer.Option(help="http or stdio")] = "http",
    mcp_port: Annotated[int | None, typer.Option(help="MCP HTTP port")] = None,
) -> None:
    """Run the MCP server (streamable HTTP at /mcp, or stdio)."""
    if transport not in ("http", "stdio"):
        raise typer.BadParameter("transport must be http or stdio")
    settings = _settings(data_dir, mcp_port=mcp_port)
    from mcp_server.app import serve_http, serve_stdio

    with _database(settings) as (_, app_url):
        configured = settings.model_copy(update={"database_url": app_url})
        asyncio.run(serve_http(configured) if transport == "http" else serve_stdio(configured))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Benchmark a fresh stack on a temp data dir (options: `python -m bench --help`).

    Runs from a source checkout (the bench package is not part of the wheel).
    """
    from bench.__main__ import main

    main(list(ctx.args))


@app.command()
def config(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table of every "
                                           "setting instead of the effective values")] = False,
) -> None:
    """Show the effective configuration (secrets masked)."""
    from team_memory.settings import env_name, settings_table

    if markdown:
        typer.echo(settings_table())
        return
    settings = Settings()
    for name, value in settings.model_dump().items():
        shown = "****" if "key" in name or "password" in name else value
        if name == "database_url" and value:
            shown = "****"
        typer.echo(f"{env_name(name)}={'' if shown is None else shown}")


# --- tenants and keys -------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(name: str, data_dir: DataDir = None) -> None:
    """Create a tenant (a team: the isolation boundary)."""
    from team_memory.tenants import ensure_tenant

    async def run(admin_url: str) -> None:
        async with _admin_pool(admin_url) as pool:
            tenant_id = await ensure_tenant(pool, name)
        typer.echo(f"tenant {name} ({tenant_id})")

    with _database(_settings(data_dir)) as (admin_url, _):
        asyncio.run(run(admin_url))


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="Tenant name")],
    project: Annotated[str | None, typer.Option(help="Limit the key to one project")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Search and read only")] = False,
    name: Annotated[str, typer.Option(help="A label for the key")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Create an API key; the secret is printed once and only its hash is stored."""
    from team_memory.tenants import create_key

    async def run(admin_url: str) -> None:
        async with _admin_pool(admin_url) as pool:
            issued = await create_key(pool, tenant, name=name, project=project,
                                      read_only=read_only)
        typer.echo(f"key id {issued.key_id}\nsecret {issued.secret}\n"
                   "(shown once: store it now)")

    with _database(_settings(data_dir)) as (admin_url, _):
        asyncio.run(run(admin_url))


@key_app.command("list")
def key_list(tenant: Annotated[str, typer.Option(help="Tenant name")],
             data_dir: DataDir = None) -> None:
    """List a tenant's keys (no secrets)."""
    from team_memory import queries
    from team_memory.db import tenant_tx
    from team_memory.tenants import tenant_id_by_name

    async def run(admin_url: str) -> None:
        async with _admin_pool(admin_url) as pool:
            tenant_id = await tenant_id_by_name(pool, tenant)
            async with tenant_tx(pool, tenant_id) as conn:
                rows = await queries.list_keys(conn, tenant_id)
        for row in rows:
            state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
            scope = row["project"] or "all projects"
            mode = "read-only" if row["read_only"] else "read-write"
            typer.echo(f"{row['id']}  {row['prefix']}…  {row['name']}  {scope}  {mode}  {state}")

    with _database(_settings(data_dir)) as (admin_url, _):
        asyncio.run(run(admin_url))


@key_app.command("revoke")
def key_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key at once."""
    from uuid import UUID

    from team_memory import queries

    async def run(admin_url: str) -> bool:
        async with _admin_pool(admin_url) as pool, pool.acquire() as conn:
            return await queries.revoke_key(conn, UUID(key_id))

    with _database(_settings(data_dir)) as (admin_url, _):
        revoked = asyncio.run(run(admin_url))
    if not revoked:
        typer.secho(f"no active key {key_id}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")

