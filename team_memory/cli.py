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
eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval quality.")
app.add_typer(eval_app, name="eval")

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



# --- bulk import and export -------------------------------------------------------------------

Tenant = Annotated[str, typer.Option(help="Tenant name")]
Project = Annotated[str, typer.Option(help="Project (repository) of the memories")]


@contextlib.asynccontextmanager
async def _tenant_service(settings: Settings, admin_url: str, app_url: str,
                          tenant: str) -> AsyncIterator[tuple[Any, Any]]:
    """(MemoryService, Principal) acting for ``tenant`` as an operator (no API key)."""
    from mcp_server.app import open_service
    from team_memory.models import Principal
    from team_memory.tenants import tenant_id_by_name

    async with _admin_pool(admin_url) as admin:
        tenant_id = await tenant_id_by_name(admin, tenant)
    configured = settings.model_copy(update={"database_url": app_url})
    async with open_service(configured) as service:
        yield service, Principal(tenant_id=tenant_id, tenant_name=tenant)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="JSONL file, one memory a line ('-': stdin)")],
    project: Project,
    tenant: Tenant = LOCAL_TENANT,
    concurrency: Annotated[int, typer.Option(help="Saves in flight")] = 8,
    data_dir: DataDir = None,
) -> None:
    """Import memories from JSONL through the ingestion workflows, with progress.

    Each line: {"content": ..., "category": ..., "importance": ..., "tags": [...],
    "occurred_at": ISO 8601, "source": your id}; only content is required. Every line is
    checked before anything is saved. Needs the stack running (`team-memory up`).
    """
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from mcp_server.transfer import ImportFailed, import_items, parse_jsonl

    settings = _settings(data_dir)
    try:
        if str(file) == "-":
            items = parse_jsonl(sys.stdin.read().splitlines())
        else:
            items = parse_jsonl(file.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError, ImportFailed) as error:
        typer.secho(f"team-memory import: {error}", fg="red", err=True)
        raise typer.Exit(1) from None

    async def run(admin_url: str, app_url: str) -> Any:
        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        async with _tenant_service(settings, admin_url, app_url, tenant) as (service, who):
            with Progress(*columns, transient=False) as bar:
                tasks = {"saved": bar.add_task("saved", total=len(items)),
                         "committed": bar.add_task("committed", total=len(items))}
                return await import_items(
                    service, who, items, project, concurrency=concurrency,
                    progress=lambda phase, done, total: bar.update(
                        tasks[phase], completed=done, total=total),
                )

    with _database(settings) as (admin_url, app_url):
        try:
            report = asyncio.run(run(admin_url, app_url))
        except ImportFailed as error:
            typer.secho(f"team-memory import: {error}", fg="red", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"imported {report.saved} new, {report.already_saved} already saved"
               + (f", {report.pending} still pending" if report.pending else ""))


@app.command("export")
def export(
    project: Project,
    tenant: Tenant = LOCAL_TENANT,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="File to write (default: stdout)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Export a project's current memories as JSONL, in the order they were saved."""
    import sys

    from mcp_server.transfer import export_lines

    settings = _settings(data_dir)

    async def run(admin_url: str, app_url: str) -> int:
        count = 0
        handle = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            async with _tenant_service(settings, admin_url, app_url, tenant) as (service, who):
                async for line in export_lines(service, who, project):
                    handle.write(line + "\n")
                    count += 1
        finally:
            if output:
                handle.close()
        return count

    with _database(settings) as (admin_url, app_url):
        count = asyncio.run(run(admin_url, app_url))
    typer.echo(f"exported {count} memories", err=True)


# --- evaluation -------------------------------------------------------------------------------


@eval_app.command("locomo")
def eval_locomo(
    path: Annotated[Path, typer.Argument(help="LoCoMo-format JSON file")],
    configured: Annotated[bool, typer.Option(
        "--configured", help="Use the configured PostgreSQL and Temporal (a new tenant) "
        "instead of a throwaway stack")] = False,
    concurrency: Annotated[int, typer.Option(help="Saves in flight during import")] = 8,
) -> None:
    """Evidence recall@5/10/20 and search latency of search_memory on LoCoMo-format data,
    beside BM25-only and vector-only rankings."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from team_memory import evaluation

    try:
        conversations = evaluation.load(path)
    except evaluation.BadDataset as error:
        typer.secho(f"team-memory eval: {error}", fg="red", err=True)
        raise typer.Exit(1) from None
    settings = _settings()

    async def run(base: Settings) -> evaluation.Report:
        with Progress("{task.description}", BarColumn(), MofNCompleteColumn()) as bar:
            task = bar.add_task("importing", total=sum(len(c.turns) for c in conversations))
            offset = 0

            def show(phase: str, done: int, total: int) -> None:
                nonlocal offset
                if phase == "committed":
                    bar.update(task, completed=offset + done)
                    if done == total:
                        offset += total

            return await evaluation.evaluate(base, conversations, concurrency=concurrency,
                                             progress=show)

    async def isolated() -> evaluation.Report:
        async with evaluation.isolated_settings(settings) as base:
            return await run(base)

    if configured:
        with _database(settings) as (admin_url, app_url):
            report = asyncio.run(run(settings.model_copy(update={
                "database_url": app_url, "database_admin_url": admin_url})))
    else:
        report = asyncio.run(isolated())
    typer.echo(report.table())
