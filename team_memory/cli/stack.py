"""Running Team Memory: up, migrate, worker, serve, status, config."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated

import typer

from team_memory import embedded
from team_memory.cli.common import DataDir, load_settings, on_database
from team_memory.embedded import Database
from team_memory.stack import run_stack
from team_memory_core.settings import Settings, settings_table, shown_settings
from team_memory_core.store.migrate import migrate as apply_migrations
from team_memory_core.telemetry import configure_telemetry

app = typer.Typer()


@app.command()
def up(
    data_dir: DataDir = None,
    mcp_port: Annotated[int | None, typer.Option(help="MCP HTTP port")] = None,
    temporal_port: Annotated[int | None, typer.Option(help="Temporal dev server port")] = None,
    temporal_ui_port: Annotated[int | None, typer.Option(help="Temporal Web UI port")] = None,
) -> None:
    """Start everything on this machine: PostgreSQL, Temporal, the worker and the MCP server."""
    settings = load_settings(data_dir, mcp_port=mcp_port, temporal_port=temporal_port,
                             temporal_ui_port=temporal_ui_port)
    try:
        raise typer.Exit(run_stack(settings))
    except embedded.StackError as error:
        typer.secho(f"team-memory up: {error}", fg="red", err=True)
        raise typer.Exit(1) from None


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply the database migrations (idempotent)."""
    settings = load_settings(data_dir)
    applied = on_database(settings, lambda database: apply_migrations(database.admin_url,
                                                                      settings))
    typer.echo(f"applied migrations {applied}" if applied else "schema is up to date")


@app.command()
def worker(data_dir: DataDir = None) -> None:
    """Run a Temporal worker (ingestion and consolidation) against the configured services."""
    settings = load_settings(data_dir)
    _run_behind(settings.background_nice)
    configure_telemetry("worker")
    import uvloop

    from workflows.worker import run_worker

    # uvloop: the worker's event loop runs every activity, asyncpg round trip and Temporal
    # activation; libuv's loop and transports cost less CPU per memory than asyncio's.
    on_database(settings, lambda database: run_worker(
        settings.model_copy(update={"database_url": database.app_url})),
        loop_factory=uvloop.new_event_loop)


def _run_behind(niceness: int) -> None:
    """Lower this process's priority by ``niceness``. Linux schedules threads, each created
    with its creator's niceness: threads started at import (numpy's BLAS pool, onnxruntime's)
    are lowered one by one, and every thread started later inherits the lower priority."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        os.nice(niceness)
        return
    target = min(os.getpriority(os.PRIO_PROCESS, 0) + niceness, 19)
    for task in tasks.iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            os.setpriority(os.PRIO_PROCESS, int(task.name), target)


@app.command()
def serve(
    data_dir: DataDir = None,
    transport: Annotated[str, typer.Option(help="http or stdio")] = "http",
    mcp_port: Annotated[int | None, typer.Option(help="MCP HTTP port")] = None,
) -> None:
    """Run the MCP server (streamable HTTP at /mcp, or stdio)."""
    if transport not in ("http", "stdio"):
        raise typer.BadParameter("transport must be http or stdio")
    settings = load_settings(data_dir, mcp_port=mcp_port)
    configure_telemetry("mcp-server")
    from team_memory_core.embedder import load_in_background

    embedder = load_in_background(settings)  # overlaps the imports below and the connections
    from mcp_server.app import serve_http, serve_stdio

    async def run(database: Database) -> None:
        configured = settings.model_copy(update={"database_url": database.app_url})
        if transport == "http":
            await serve_http(configured, embedder)
        else:
            await serve_stdio(configured, embedder)

    import uvloop

    # uvloop, as in the worker: every request's HTTP exchange and asyncpg round trips run on
    # the event loop, and libuv's loop and transports cost less CPU per request than asyncio's.
    on_database(settings, run, loop_factory=uvloop.new_event_loop if transport == "http"
                else None)


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Show every component's health, pending and failed ingestions, schedules and policies."""
    from team_memory.status import collect_status, render

    settings = load_settings(data_dir)
    report = on_database(settings, lambda database: collect_status(settings,
                                                                   database.admin_url))
    typer.echo(render(report))
    raise typer.Exit(0 if report.healthy else 1)


@app.command()
def config(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table of every "
                                           "setting instead of the effective values")] = False,
) -> None:
    """Show the effective configuration (secrets masked)."""
    if markdown:
        typer.echo(settings_table())
        return
    for variable, value in shown_settings(Settings()).items():
        typer.echo(f"{variable}={'' if value is None else value}")
