"""`team-memory`: the command line that wires the parts together.

This module is the composition root: it is the one place in the shared package that starts
the role packages (mcp_server, workflows), and it imports them lazily, per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer

from team_memory import embedded
from team_memory.stack import LOCAL_TENANT
from team_memory_core.logs import configure_logging
from team_memory_core.settings import Settings
from team_memory_core.store.migrate import migrate as apply_migrations
from team_memory_core.store.pool import create_pool
from team_memory_core.store.tenants import ApiKey
from team_memory_core.telemetry import configure_telemetry

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Team Memory: long-term team memory for Claude over MCP.")
tenant_app = typer.Typer(no_args_is_help=True, help="Manage tenants.")
key_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
install_app = typer.Typer(no_args_is_help=True, help="Connect a client to Team Memory.")
uninstall_app = typer.Typer(no_args_is_help=True, help="Undo `install` exactly.")
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")
app.add_typer(install_app, name="install")
app.add_typer(uninstall_app, name="uninstall")
eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval quality.")
app.add_typer(eval_app, name="eval")
review_app = typer.Typer(no_args_is_help=True, help="Changes the model proposed to another "
                         "author's memory, held for review.")
app.add_typer(review_app, name="review")

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
    configure_telemetry("worker")
    from workflows.worker import run_worker

    with _database(settings) as (_, app_url):
        asyncio.run(run_worker(settings.model_copy(update={"database_url": app_url})))


@app.command()
def consolidate(
    project: Annotated[str, typer.Option(help="Project to consolidate")],
    tenant: Annotated[str, typer.Option(help="Tenant name")] = LOCAL_TENANT,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run and print its "
                                       "report")] = False,
) -> None:
    """Run one project's nightly consolidation now (starts the Consolidate workflow)."""
    from team_memory_core.schedules import run_now
    from team_memory_core.temporal import connect

    settings = _settings()

    async def run(app_url: str) -> tuple[str, str | None]:
        async with _admin_pool(app_url) as pool:
            client = await connect(settings, pool)
            workflow_id, report = await run_now(client, settings, tenant, project, wait=wait)
        return workflow_id, None if report is None else report.model_dump_json(indent=2)

    with _database(settings) as (_, app_url):
        workflow_id, report = asyncio.run(run(app_url))
    typer.echo(f"started {workflow_id}")
    if report is None:
        typer.echo(f"result: temporal workflow result --workflow-id '{workflow_id}'")
    else:
        typer.echo(report)
    _exit_after_temporal_client()


def _exit_after_temporal_client() -> None:
    """End a one-shot command that used a Temporal client without interpreter finalization:
    the SDK's Rust runtime can abort the process there ("PyGILState_Release ... finalizing",
    see the platform notes). Everything is written and every database handle closed by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


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
    configure_telemetry("mcp-server")
    from team_memory_core.embedder import load_in_background

    embedder = load_in_background(settings)  # overlaps the imports below and the connections
    from mcp_server.app import serve_http, serve_stdio

    with _database(settings) as (_, app_url):
        configured = settings.model_copy(update={"database_url": app_url})
        asyncio.run(serve_http(configured, embedder) if transport == "http"
                    else serve_stdio(configured, embedder))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Benchmark a fresh stack on a temp data dir (options: `python -m bench --help`).

    Runs from a source checkout (the bench package is not part of the wheel).
    """
    from bench.__main__ import main

    main(list(ctx.args))


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Show every component's health, pending and failed ingestions, schedules and policies."""
    from team_memory.status import collect_status, render

    settings = _settings(data_dir)
    with _database(settings) as (admin_url, _):
        report = asyncio.run(collect_status(settings, admin_url))
    typer.echo(render(report))
    raise typer.Exit(0 if report.healthy else 1)


@app.command()
def config(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table of every "
                                           "setting instead of the effective values")] = False,
) -> None:
    """Show the effective configuration (secrets masked)."""
    from team_memory_core.settings import settings_table, shown_settings

    if markdown:
        typer.echo(settings_table())
        return
    for variable, value in shown_settings(Settings()).items():
        typer.echo(f"{variable}={'' if value is None else value}")


# --- tenants and keys -------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(name: str, data_dir: DataDir = None) -> None:
    """Create a tenant (a team: the isolation boundary)."""
    from team_memory_core.tenants import ensure_tenant

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
    expires_in: Annotated[str | None, typer.Option(
        help="Refuse the key after this long: 12h, 90d, 6w")] = None,
    expires_at: Annotated[str | None, typer.Option(
        help="Refuse the key from this time on (ISO 8601; UTC without a zone)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an API key; the secret is printed once and only its hash is stored."""
    from team_memory_core.tenants import create_key

    expiry = _key_expiry(expires_in, expires_at)

    async def run(admin_url: str) -> None:
        async with _admin_pool(admin_url) as pool:
            issued = await create_key(pool, tenant, name=name, project=project,
                                      read_only=read_only, expires_at=expiry)
        until = f"\nexpires {expiry:%Y-%m-%d %H:%M %Z}" if expiry else ""
        typer.echo(f"key id {issued.key_id}\nsecret {issued.secret}{until}\n"
                   "(shown once: store it now)")

    with _database(_settings(data_dir)) as (admin_url, _):
        asyncio.run(run(admin_url))


@key_app.command("list")
def key_list(tenant: Annotated[str, typer.Option(help="Tenant name")],
             data_dir: DataDir = None) -> None:
    """List a tenant's keys (no secrets)."""
    from team_memory_core.store.pool import tenant_tx
    from team_memory_core.store.tenants import list_keys
    from team_memory_core.tenants import tenant_id_by_name

    async def run(admin_url: str) -> None:
        async with _admin_pool(admin_url) as pool:
            tenant_id = await tenant_id_by_name(pool, tenant)
            async with tenant_tx(pool, tenant_id) as conn:
                keys = await list_keys(conn, tenant_id)
        for key in keys:
            scope = key.project or "all projects"
            mode = "read-only" if key.read_only else "read-write"
            typer.echo(f"{key.id}  {key.prefix}…  {key.name}  {scope}  {mode}  "
                       f"{_key_state(key)}")

    with _database(_settings(data_dir)) as (admin_url, _):
        asyncio.run(run(admin_url))


def _key_expiry(expires_in: str | None, expires_at: str | None) -> datetime | None:
    from datetime import UTC

    from team_memory_core.tenants import parse_duration

    if expires_in is not None and expires_at is not None:
        raise typer.BadParameter("give --expires-in or --expires-at, not both")
    now = datetime.now(UTC)
    if expires_in is not None:
        try:
            return now + parse_duration(expires_in)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--expires-in") from None
    if expires_at is None:
        return None
    try:
        expiry = datetime.fromisoformat(expires_at)
    except ValueError:
        raise typer.BadParameter("is not an ISO 8601 time", param_hint="--expires-at") from None
    expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)
    if expiry <= now:
        raise typer.BadParameter("is in the past", param_hint="--expires-at")
    return expiry


def _key_state(key: ApiKey) -> str:
    if key.revoked_at:
        return f"revoked {key.revoked_at:%Y-%m-%d}"
    if key.expired and key.expires_at:
        return f"expired {key.expires_at:%Y-%m-%d %H:%M}"
    if key.expires_at:
        return f"active, expires {key.expires_at:%Y-%m-%d %H:%M}"
    return "active"


@key_app.command("revoke")
def key_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key at once."""
    from uuid import UUID

    from team_memory_core.tenants import revoke_key

    async def run(admin_url: str) -> bool:
        async with _admin_pool(admin_url) as pool:
            return await revoke_key(pool, UUID(key_id))

    with _database(_settings(data_dir)) as (admin_url, _):
        revoked = asyncio.run(run(admin_url))
    if not revoked:
        typer.secho(f"no active key {key_id}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


# --- Temporal payload keys (docs/security.md, "Temporal") --------------------------------------

temporal_key_app = typer.Typer(no_args_is_help=True, help="Manage the keys that encrypt "
                               "Temporal payloads.")
app.add_typer(temporal_key_app, name="temporal-key")


@contextlib.asynccontextmanager
async def _key_admin(settings: Settings, urls: tuple[str, str],
                     tenant: str) -> AsyncIterator[Any]:
    """The tenant's keyring administration, as the application role, audited by the caller."""
    from team_memory_core.temporal_keys import KeyAdministration, Keyring, load_kek

    async with _operator(*urls, tenant) as (pool, actor):
        yield KeyAdministration(Keyring(pool, load_kek(settings)), actor.tenant_id), actor


async def _audit_key_change(admin: Any, actor: Any, action: str, detail: dict[str, Any]) -> None:
    from team_memory_core.store.audit import insert_audit
    from team_memory_core.store.pool import tenant_tx

    async with tenant_tx(admin.keyring.pool, actor.tenant_id) as conn:
        await insert_audit(conn, tenant_id=actor.tenant_id, key_id=None,
                                   actor=actor.name, action=action, outcome="ok", detail=detail)


@temporal_key_app.command("list")
def temporal_key_list(tenant: TenantOption, data_dir: DataDir = None) -> None:
    """The tenant's keyring, newest (in use) first."""

    settings = _settings(data_dir)

    async def run(urls: tuple[str, str]) -> list[Any]:
        async with _key_admin(settings, urls, tenant) as (admin, _):
            listed: list[Any] = await admin.list()
            return listed

    with _database(settings) as urls:
        keys = asyncio.run(run(urls))
    for key in keys:
        typer.echo(f"{key.id}  created {key.created_at:%Y-%m-%d %H:%M:%S%z}  "
                   f"wraps {key.workflow_keys} workflow keys  KEK {key.kek_id}")


@temporal_key_app.command("rotate")
def temporal_key_rotate(tenant: TenantOption, data_dir: DataDir = None) -> None:
    """Add a new tenant key and re-wrap every workflow key under it."""

    settings = _settings(data_dir)

    async def run(urls: tuple[str, str]) -> tuple[Any, int]:
        async with _key_admin(settings, urls, tenant) as (admin, actor):
            new_id, rewrapped = await admin.rotate()
            await _audit_key_change(admin, actor, "temporal-key.rotate",
                                    {"key": str(new_id), "rewrapped": rewrapped})
            return new_id, rewrapped

    with _database(settings) as urls:
        new_id, rewrapped = asyncio.run(run(urls))
    typer.echo(f"new key {new_id}; {rewrapped} workflow keys re-wrapped. Retire older keys "
               "once the namespace retention has passed (docs/security.md).")


@temporal_key_app.command("retire")
def temporal_key_retire(key_id: str, tenant: TenantOption, data_dir: DataDir = None) -> None:
    """Delete an old tenant key (not the newest; not one still wrapping workflow keys)."""
    from uuid import UUID

    from team_memory_core.temporal_keys import KeyStillInUse, KeyUnavailable

    settings = _settings(data_dir)

    async def run(urls: tuple[str, str]) -> None:
        async with _key_admin(settings, urls, tenant) as (admin, actor):
            await admin.retire(UUID(key_id))
            await _audit_key_change(admin, actor, "temporal-key.retire", {"key": key_id})

    try:
        with _database(settings) as urls:
            asyncio.run(run(urls))
    except (KeyStillInUse, KeyUnavailable) as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"retired {key_id}")


@temporal_key_app.command("new-kek")
def temporal_key_new_kek() -> None:
    """Print a new random key-encryption key (for TEAM_MEMORY_TEMPORAL_KEK or rotate-kek)."""
    from team_memory_core.temporal_keys import new_kek_text

    typer.echo(new_kek_text())


@temporal_key_app.command("rotate-kek")
def temporal_key_rotate_kek(
    new_kek_file: Annotated[Path, typer.Option(help="File holding the new KEK (base64; "
                                               "`temporal-key new-kek` makes one)")],
    data_dir: DataDir = None,
) -> None:
    """Re-wrap every tenant's keys under a new KEK. Stop the stack first, then install the new
    KEK (TEAM_MEMORY_TEMPORAL_KEK, or the data dir's temporal-kek file) before starting it."""
    from team_memory_core.store.tenants import list_tenants
    from team_memory_core.temporal_keys import parse_kek

    settings = _settings(data_dir)
    new = parse_kek(new_kek_file.read_text(), str(new_kek_file))

    async def run(urls: tuple[str, str]) -> dict[str, int]:
        async with _admin_pool(urls[0]) as pool, pool.acquire() as conn:
            tenants = [found.name for found in await list_tenants(conn)]
        done = {}
        for tenant in tenants:
            async with _key_admin(settings, urls, tenant) as (admin, actor):
                done[tenant] = await admin.rewrap_under(new)
                await _audit_key_change(admin, actor, "temporal-key.rotate-kek",
                                        {"kek": new.id, "rewrapped": done[tenant]})
        return done

    with _database(settings) as urls:
        done = asyncio.run(run(urls))
    for tenant, count in done.items():
        typer.echo(f"{tenant}: {count} tenant keys re-wrapped under KEK {new.id}")



# --- Claude Code ------------------------------------------------------------------------------

ScopeOption = Annotated[str, typer.Option(help="user (~/.claude) or project (this repository)")]
HomeOption = Annotated[Path | None, typer.Option(help="Home directory holding .claude "
                                                 "(default: yours)")]
ProjectOption = Annotated[Path | None, typer.Option("--project-dir", help="Project root for "
                                                    "--scope project (default: .)")]


def _claude_paths(scope: str, home: Path | None, project_dir: Path | None) -> Any:
    from team_memory.claude_code_files import Paths

    if scope not in ("user", "project"):
        raise typer.BadParameter("scope must be user or project")
    return Paths.for_scope(scope, home or Path.home(), (project_dir or Path.cwd()).resolve())  # type: ignore[arg-type]


def _local_key(settings: Settings) -> str | None:
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    try:
        return (settings.data_dir / "local-api-key").read_text().strip() or None
    except OSError:
        return None


@install_app.command("claude-code")
def install_claude_code(
    scope: ScopeOption = "user",
    prompts: Annotated[bool, typer.Option("--prompts", help="Also capture the prompts you "
                                          "type (UserPromptSubmit)")] = False,
    self_capture: Annotated[bool, typer.Option(
        "--self-capture", help="Without an ANTHROPIC_API_KEY on the server: at the end of a "
        "turn that changed the repository, ask this session's Claude to save its decisions "
        "(one extra turn)")] = False,
    home: HomeOption = None,
    project_dir: ProjectOption = None,
    data_dir: DataDir = None,
) -> None:
    """Register the MCP server with Claude Code and install the capture and context hooks."""
    from team_memory import claude_code_files as claude_code

    settings = _settings(data_dir)
    paths = _claude_paths(scope, home, project_dir)
    key = _local_key(settings)
    server = f"http://{settings.mcp_host}:{settings.mcp_port}"
    events = ["SessionStart", *claude_code.CAPTURE_EVENTS] + (["UserPromptSubmit"] if prompts
                                                               else [])
    entry = claude_code.mcp_entry(paths.scope, settings.mcp_url, key,
                                  claude_code.headers_helper_command(paths.scope,
                                                                     settings.data_dir))
    try:
        report = claude_code.install(
            paths, settings.data_dir,
            commands=claude_code.hook_commands(events, lambda e: claude_code.hook_command(
                e, server, settings.data_dir, self_capture=self_capture)),
            entry=entry, add_command=claude_code.mcp_add_command(paths.scope, entry),
        )
    except claude_code.InstallError as error:
        typer.secho(f"team-memory install: {error} (nothing was written)", fg="red", err=True)
        raise typer.Exit(1) from None
    for path in report.written:
        typer.echo(f"wrote {path}")
    for note in report.notes:
        typer.echo(note)
    typer.echo(f"hooks: {', '.join(events)} -> {server}/hooks/...")
    typer.echo("each session sends its repository's project (X-Team-Memory-Project, from "
               "the headersHelper); check with: team-memory doctor")
    if scope == "project":
        typer.echo("the committed MCP entry holds no key: the headersHelper reads "
                   "$TEAM_MEMORY_API_KEY or the local key file")
    if self_capture:
        typer.echo("self-capture: at the end of a turn that changed the repository, Claude is "
                   "asked to save its decisions (when the server has no ANTHROPIC_API_KEY); "
                   "allow mcp__team-memory__save_memory once so it can")
    elif settings.anthropic_api_key is None:
        typer.echo("capture is off until ANTHROPIC_API_KEY is set for the server and worker "
                   "(or reinstall with --self-capture): only explicit memories are kept")
    typer.echo(f"undo with: team-memory uninstall claude-code --scope {scope}")


@uninstall_app.command("claude-code")
def uninstall_claude_code(
    scope: ScopeOption = "user",
    home: HomeOption = None,
    project_dir: ProjectOption = None,
    data_dir: DataDir = None,
) -> None:
    """Remove exactly what `install claude-code` added (original files restored byte for byte
    when nothing else changed them)."""
    from team_memory import claude_code_files as claude_code

    settings = _settings(data_dir)
    report = claude_code.uninstall(_claude_paths(scope, home, project_dir), settings.data_dir)
    for path in report.restored:
        typer.echo(f"restored {path}")
    for path in report.removed:
        typer.echo(f"removed {path}")
    for note in report.notes:
        typer.echo(note)


@app.command()
def doctor(home: HomeOption = None) -> None:
    """Check the Claude Code setup from this directory: config files and hooks, the server,
    the key, the project this directory resolves to, the capture mode and the hook spool."""
    from team_memory.doctor import Doctor, render

    cwd = Path.cwd()
    findings = Doctor(cwd, home or Path.home()).run()
    typer.echo(render(findings, cwd))
    raise typer.Exit(1 if any(f.status == "fail" for f in findings) else 0)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def hook(ctx: typer.Context, event: str) -> None:
    """Run one Claude Code hook (reads the hook's JSON on stdin). Installed hooks call
    `python -m team_memory.hook` directly, which skips this CLI's imports."""
    from team_memory.hook import main

    raise typer.Exit(main([event, *ctx.args]))


# --- audit trail, restore and purge -----------------------------------------------------------

TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant name")]


@contextlib.asynccontextmanager
async def _operator(
    admin_url: str, app_url: str, tenant: str
) -> AsyncIterator[tuple[asyncpg.Pool, Any]]:
    """(application pool, audit actor) for a tenant: data is read and written as the
    application role, so Row-Level Security applies to operators' commands too."""
    from team_memory_core.erasure import Actor
    from team_memory_core.tenants import UnknownTenant, operator, tenant_id_by_name

    async with _admin_pool(admin_url) as admin:
        try:
            tenant_id = await tenant_id_by_name(admin, tenant)
        except UnknownTenant as error:
            typer.secho(str(error), fg="red", err=True)
            raise typer.Exit(1) from None
    async with _admin_pool(app_url) as pool:
        yield pool, Actor(tenant_id=tenant_id, tenant_name=tenant, name=operator())


@app.command()
def audit(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant name")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many entries")] = 50,
    unscoped: Annotated[bool, typer.Option("--unscoped", help="Failed authentications with "
                                           "unknown keys (no tenant; schema owner)")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print the audit trail (newest first): who did what, to what, with which outcome."""
    import json

    from team_memory_core.store.audit import AuditEntry, audit_entries, unscoped_audit_entries
    from team_memory_core.store.pool import tenant_tx

    if (tenant is None) == (not unscoped):
        raise typer.BadParameter("give --tenant T or --unscoped")

    async def run(admin_url: str, app_url: str) -> list[AuditEntry]:
        if unscoped:
            async with _admin_pool(admin_url) as admin, admin.acquire() as conn:
                return await unscoped_audit_entries(conn, limit)
        assert tenant is not None
        async with _operator(admin_url, app_url, tenant) as (pool, actor), \
                tenant_tx(pool, actor.tenant_id) as conn:
            return await audit_entries(conn, limit)

    with _database(_settings(data_dir)) as (admin_url, app_url):
        entries = asyncio.run(run(admin_url, app_url))
    for entry in entries:
        key = str(entry.key_id)[:8] if entry.key_id else "-"
        detail = json.dumps(entry.detail, ensure_ascii=False)
        typer.echo(f"{entry.created_at:%Y-%m-%d %H:%M:%S%z}  {entry.actor}  key {key}  "
                   f"{entry.action}  {entry.target or '-'}  {entry.outcome}  {detail}")


@review_app.command("list")
def review_list(
    tenant: TenantOption,
    status: Annotated[str, typer.Option(help="pending, approved, rejected or all")] = "pending",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many entries")] = 50,
    data_dir: DataDir = None,
) -> None:
    """Print the merges and supersedes held for review (newest first)."""
    from team_memory_core.store.pool import tenant_tx
    from team_memory_core.store.proposals import HeldProposal, proposals

    async def run(admin_url: str, app_url: str) -> list[HeldProposal]:
        async with _operator(admin_url, app_url, tenant) as (pool, actor), \
                tenant_tx(pool, actor.tenant_id) as conn:
            return await proposals(conn, None if status == "all" else status, limit)

    with _database(_settings(data_dir)) as (admin_url, app_url):
        held = asyncio.run(run(admin_url, app_url))
    for row in held:
        sources = ",".join(str(uid) for uid in row.source_ids)
        typer.echo(f"#{row.id}  {row.created_at:%Y-%m-%d %H:%M:%S%z}  {row.status}  "
                   f"{row.kind} {row.target_id} <- {sources}  {row.origin}  "
                   f"{row.model or row.policy}  project {row.project}")
        for label, text in (("reason", row.reason), ("proposed", row.proposed_text)):
            if text:
                typer.echo(f"    {label}: {' '.join(text.split())}")


@app.command()
def restore(memory_id: str, tenant: TenantOption, data_dir: DataDir = None) -> None:
    """Bring back a soft-forgotten memory (purged memories cannot come back)."""
    from uuid import UUID

    from team_memory_core.erasure import MemoryNotFound
    from team_memory_core.erasure import restore as restore_memory

    async def run(admin_url: str, app_url: str) -> str:
        async with _operator(admin_url, app_url, tenant) as (pool, actor):
            return str(await restore_memory(pool, actor, UUID(memory_id)))

    with _database(_settings(data_dir)) as (admin_url, app_url):
        try:
            status = asyncio.run(run(admin_url, app_url))
        except MemoryNotFound as error:
            typer.secho(str(error), fg="red", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"restored {memory_id} ({status})")


@app.command()
def purge(
    memory_id: str,
    tenant: TenantOption,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail)")],
    data_dir: DataDir = None,
) -> None:
    """Erase a memory's text everywhere (database and Temporal history), irreversibly."""
    from uuid import UUID

    from team_memory_core.erasure import HistoryNotDeleted, MemoryNotFound
    from team_memory_core.erasure import purge as purge_memory
    from team_memory_core.temporal import connect

    settings = _settings(data_dir)

    async def run(admin_url: str, app_url: str) -> Any:
        async with _operator(admin_url, app_url, tenant) as (pool, actor):
            client = await connect(settings, pool)
            return await purge_memory(pool, client, settings, actor, UUID(memory_id),
                                      reason)

    with _database(settings) as (admin_url, app_url):
        try:
            report = asyncio.run(run(admin_url, app_url))
        except (MemoryNotFound, HistoryNotDeleted) as error:
            typer.secho(str(error), fg="red", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"purged {memory_id}: {len(report.purged)} memory rows, "
               f"{report.events_erased} history events, workflows {report.workflows_deleted}")
    _exit_after_temporal_client()


# --- bulk import and export -------------------------------------------------------------------

Tenant = Annotated[str, typer.Option(help="Tenant name")]
Project = Annotated[str, typer.Option(help="Project (repository) of the memories")]


@contextlib.asynccontextmanager
async def _tenant_service(settings: Settings, admin_url: str, app_url: str,
                          tenant: str) -> AsyncIterator[tuple[Any, Any]]:
    """(MemoryService, Principal) acting for ``tenant`` as an operator (no API key)."""
    from mcp_server.app import open_service
    from team_memory_core.models import Principal
    from team_memory_core.tenants import operator, tenant_id_by_name

    async with _admin_pool(admin_url) as admin:
        tenant_id = await tenant_id_by_name(admin, tenant)
    configured = settings.model_copy(update={"database_url": app_url})
    async with open_service(configured) as service:
        yield service, Principal(tenant_id=tenant_id, tenant_name=tenant, actor=operator())


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

    from team_memory import locomo as evaluation

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
