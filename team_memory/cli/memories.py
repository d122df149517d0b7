"""The memories of a tenant, as an operator: import, export, restore, purge, screen, audit,
consolidate, review list / approve / reject."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import asyncpg
import typer

from team_memory.cli.common import (
    DataDir,
    TenantOption,
    as_operator,
    exit_after_temporal_client,
    fail,
    load_settings,
    on_database,
    operator_pool,
    small_pool,
)
from team_memory.embedded import Database
from team_memory.stack import LOCAL_TENANT
from team_memory_core.erasure import Actor, HistoryNotDeleted, MemoryNotFound, PurgeReport
from team_memory_core.erasure import purge as purge_memory
from team_memory_core.erasure import restore as restore_memory
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from team_memory_core.schedules import run_now
from team_memory_core.screening import ScreenReport, screen_stored
from team_memory_core.settings import Settings
from team_memory_core.store.audit import AuditEntry, audit_entries, unscoped_audit_entries
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.proposals import HeldProposal, proposals
from team_memory_core.temporal import connect
from team_memory_core.tenants import operator, tenant_id_by_name

if TYPE_CHECKING:
    from mcp_server.memories import MemoryService
    from mcp_server.merge_review import ChangeReview
    from mcp_server.transfer import ImportReport
    from team_memory_core.models.sharing import Decided

review_app = typer.Typer(no_args_is_help=True, help="Changes the model proposed to another "
                         "author's memory, held for review.")
app = typer.Typer()
app.add_typer(review_app, name="review")

Tenant = Annotated[str, typer.Option(help="Tenant name")]
Project = Annotated[str, typer.Option(help="Project (repository) of the memories")]


# --- bulk import and export -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _tenant_service(settings: Settings, database: Database,
                          tenant: str) -> AsyncIterator[tuple[MemoryService, Principal]]:
    """(MemoryService, Principal) acting for ``tenant`` as an operator (no API key)."""
    from mcp_server.app import open_service

    async with small_pool(database.admin_url) as admin:
        tenant_id = await tenant_id_by_name(admin, tenant)
    configured = settings.model_copy(update={"database_url": database.app_url})
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from mcp_server.transfer import ImportFailed, import_items, parse_jsonl

    settings = load_settings(data_dir)
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        items = parse_jsonl(text.splitlines())
    except (OSError, UnicodeDecodeError, ImportFailed) as error:
        fail(f"team-memory import: {error}")

    async def run(database: Database) -> ImportReport:
        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        async with _tenant_service(settings, database, tenant) as (service, who):
            with Progress(*columns, transient=False) as bar:
                tasks = {"saved": bar.add_task("saved", total=len(items)),
                         "committed": bar.add_task("committed", total=len(items))}
                return await import_items(
                    service, who, items, project, concurrency=concurrency,
                    progress=lambda phase, done, total: bar.update(
                        tasks[phase], completed=done, total=total),
                )

    try:
        report = on_database(settings, run)
    except ImportFailed as error:
        fail(f"team-memory import: {error}")
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
    from mcp_server.transfer import export_lines

    settings = load_settings(data_dir)

    async def run(database: Database) -> int:
        count = 0
        handle = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            async with _tenant_service(settings, database, tenant) as (service, who):
                async for line in export_lines(service, who, project):
                    handle.write(line + "\n")
                    count += 1
        finally:
            if output:
                handle.close()
        return count

    typer.echo(f"exported {on_database(settings, run)} memories", err=True)


# --- restore and purge ------------------------------------------------------------------------


@app.command()
def restore(memory_id: str, tenant: TenantOption, data_dir: DataDir = None) -> None:
    """Bring back a soft-forgotten memory (purged memories cannot come back)."""
    async def run(pool: asyncpg.Pool, actor: Actor) -> MemoryStatus:
        return await restore_memory(pool, actor, UUID(memory_id))

    try:
        status = as_operator(load_settings(data_dir), tenant, run)
    except MemoryNotFound as error:
        fail(str(error))
    typer.echo(f"restored {memory_id} ({status})")


@app.command()
def purge(
    memory_id: str,
    tenant: TenantOption,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail)")],
    data_dir: DataDir = None,
) -> None:
    """Erase a memory's text everywhere (database and Temporal history), irreversibly."""
    settings = load_settings(data_dir)

    async def run(pool: asyncpg.Pool, actor: Actor) -> PurgeReport:
        client = await connect(settings, pool)
        return await purge_memory(pool, client, settings, actor, UUID(memory_id), reason)

    try:
        report = as_operator(settings, tenant, run)
    except (MemoryNotFound, HistoryNotDeleted) as error:
        fail(str(error))
    typer.echo(f"purged {memory_id}: {len(report.purged)} memory rows, "
               f"{report.events_erased} history events, workflows {report.workflows_deleted}")
    exit_after_temporal_client()


@app.command()
def screen(tenant: TenantOption, data_dir: DataDir = None) -> None:
    """Run the injection rules over the tenant's memories not flagged yet (saved before the
    rules, or before an update of them) and flag those aimed at AI agents."""
    async def run(pool: asyncpg.Pool, actor: Actor) -> ScreenReport:
        return await screen_stored(pool, actor)

    report = as_operator(load_settings(data_dir), tenant, run)
    typer.echo(f"checked {report.checked} memories, flagged {len(report.flagged)} as aimed at "
               "AI agents (kept out of session context; see their history)")
    for memory_id in report.flagged:
        typer.echo(f"  {memory_id}")


# --- the audit trail, consolidation and review ------------------------------------------------


@app.command()
def audit(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant name")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many entries")] = 50,
    unscoped: Annotated[bool, typer.Option("--unscoped", help="Failed authentications with "
                                           "unknown keys (no tenant; schema owner)")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print the audit trail (newest first): who did what, to what, with which outcome."""
    if (tenant is None) == (not unscoped):
        raise typer.BadParameter("give --tenant T or --unscoped")

    async def run(database: Database) -> list[AuditEntry]:
        if tenant is None:
            async with small_pool(database.admin_url) as admin, admin.acquire() as conn:
                return await unscoped_audit_entries(conn, limit)
        async with operator_pool(database, tenant) as (pool, actor), \
                tenant_tx(pool, actor.tenant_id) as conn:
            return await audit_entries(conn, limit)

    for entry in on_database(load_settings(data_dir), run):
        key = str(entry.key_id)[:8] if entry.key_id else "-"
        detail = json.dumps(entry.detail, ensure_ascii=False)
        typer.echo(f"{entry.created_at:%Y-%m-%d %H:%M:%S%z}  {entry.actor}  key {key}  "
                   f"{entry.action}  {entry.target or '-'}  {entry.outcome}  {detail}")


@app.command()
def consolidate(
    project: Annotated[str, typer.Option(help="Project to consolidate")],
    tenant: TenantOption = LOCAL_TENANT,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run and print its "
                                       "report")] = False,
) -> None:
    """Run one project's nightly consolidation now (starts the Consolidate workflow)."""
    settings = load_settings()

    async def run(database: Database) -> tuple[str, str | None]:
        async with small_pool(database.app_url) as pool:
            client = await connect(settings, pool)
            workflow_id, report = await run_now(client, settings, tenant, project, wait=wait)
        return workflow_id, None if report is None else report.model_dump_json(indent=2)

    workflow_id, report = on_database(settings, run)
    typer.echo(f"started {workflow_id}")
    if report is None:
        typer.echo(f"result: temporal workflow result --workflow-id '{workflow_id}'")
    else:
        typer.echo(report)
    exit_after_temporal_client()


@review_app.command("list")
def review_list(
    tenant: TenantOption,
    status: Annotated[str, typer.Option(help="pending, approved, rejected or all")] = "pending",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many entries")] = 50,
    data_dir: DataDir = None,
) -> None:
    """Print the merges and supersedes held for review (newest first)."""
    async def run(pool: asyncpg.Pool, actor: Actor) -> list[HeldProposal]:
        async with tenant_tx(pool, actor.tenant_id) as conn:
            return await proposals(conn, None if status == "all" else status, limit)

    for row in as_operator(load_settings(data_dir), tenant, run):
        sources = ",".join(str(uid) for uid in row.source_ids)
        typer.echo(f"#{row.id}  {row.created_at:%Y-%m-%d %H:%M:%S%z}  {row.status}  "
                   f"{row.kind} {row.target_id} <- {sources}  {row.origin}  "
                   f"{row.model or row.policy}  project {row.project}")
        for label, text in (("reason", row.reason), ("proposed", row.proposed_text)):
            if text:
                typer.echo(f"    {label}: {' '.join(text.split())}")


Proposal = Annotated[int | None, typer.Option(
    help="The proposal's number (`review list`), when the memory has several waiting")]
MemoryArgument = Annotated[UUID, typer.Argument(help="The memory the change would rewrite "
                                                "(the target `review list` prints)")]


@review_app.command("approve")
def review_approve(memory: MemoryArgument, tenant: TenantOption, proposal: Proposal = None,
                   data_dir: DataDir = None) -> None:
    """Approve a held merge or supersede for the memories with no recorded author (an
    import's); it is applied once every author it changes approved too."""
    _decide(data_dir, tenant, "approve", lambda review, who: review.approve(who, memory,
                                                                           proposal))


@review_app.command("reject")
def review_reject(memory: MemoryArgument, tenant: TenantOption,
                  reason: Annotated[str, typer.Option(help="Why (kept with the proposal)")],
                  proposal: Proposal = None, data_dir: DataDir = None) -> None:
    """Reject a held merge or supersede of memories with no recorded author: nothing changes."""
    _decide(data_dir, tenant, "reject", lambda review, who: review.reject(who, memory,
                                                                         proposal, reason))


def _decide(data_dir: Path | None, tenant: str, verb: str,
            decision: Callable[[ChangeReview, Principal], Awaitable[Decided]]) -> None:
    from mcp_server.errors import Forbidden, InvalidInput, NotFound
    from mcp_server.merge_review import ChangeReview, audited

    settings = load_settings(data_dir)

    async def run(database: Database) -> Decided:
        async with _tenant_service(settings, database, tenant) as (service, who):
            review = ChangeReview(service)
            return await audited(service, who, f"review.{verb}", None,
                                 lambda: decision(review, who))

    try:
        done = on_database(settings, run)
    except (InvalidInput, NotFound, Forbidden) as error:
        fail(f"team-memory review {verb}: {error}")
    waiting = f"; waiting for {', '.join(done.waiting_for)}" if done.waiting_for else ""
    result = f" -> memory {done.result_id}" if done.result_id else ""
    typer.echo(f"proposal #{done.proposal} ({done.kind.value} of {done.id}): "
               f"{done.status.value}{result}{waiting}")
