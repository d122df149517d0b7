"""`team-memory status`: every component's health and the ingestion backlog, in one report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import anyio
import asyncpg
import httpx
from temporalio.client import Client

from team_memory.supervisor import read_state
from team_memory_core.contract import INGESTIONS
from team_memory_core.health import WORKER_UNKNOWN, Check, check_worker, healthy
from team_memory_core.settings import Settings
from team_memory_core.store import embeddings
from team_memory_core.store.memories import count_by_status
from team_memory_core.store.outbox import Backlog, backlog
from team_memory_core.store.pool import create_pool, tenant_tx
from team_memory_core.store.tenants import list_tenants
from team_memory_core.temporal import connect

CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Schedule:
    id: str
    workflow: str
    next_run: datetime | None
    paused: bool


@dataclass
class StatusReport:
    components: dict[str, Check] = field(default_factory=dict)
    memories_by_status: dict[str, int] = field(default_factory=dict)
    pending_by_tenant: dict[str, int] = field(default_factory=dict)
    task_queue: str = ""
    outbox: list[Backlog] = field(default_factory=list)  # saves whose workflow waits to start
    running_ingestions: int | None = None
    failed_ingestions: int | None = None
    schedules: list[Schedule] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    restarts: dict[str, str] = field(default_factory=dict)  # child of `up` -> what happened

    @property
    def healthy(self) -> bool:
        return healthy(self.components)


async def collect_status(settings: Settings, admin_url: str) -> StatusReport:
    report = StatusReport(task_queue=settings.task_queue, settings={
        "embedding model": f"{settings.embedding_model} ({settings.embedding_provider}, "
                           f"{settings.embedding_dim} dims)",
        "dedupe policy": settings.dedupe_policy + (f" ({settings.llm_model})"
                                                   if settings.dedupe_policy == "haiku" else ""),
        "task queue": f"{settings.task_queue} on {settings.temporal_target} "
                      f"(namespace {settings.temporal_namespace})",
    })
    await _database(report, admin_url)
    await _temporal(report, settings)
    await _mcp_server(report, settings)
    report.restarts = _restarts(settings)
    return report


def _restarts(settings: Settings) -> dict[str, str]:
    """What `up` had to restart (its state file in the data dir)."""
    restarted = {}
    for name, child in read_state(settings.data_dir).items():
        if isinstance(child, dict) and child.get("restarts"):
            restarted[name] = (f"restarted {child['restarts']} time(s), last at "
                               f"{child.get('last_restart')} after exit {child.get('last_exit')}")
    return restarted


async def _database(report: StatusReport, admin_url: str) -> None:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S):
            pool = await create_pool(admin_url, min_size=1, max_size=2)
            try:
                await _count_memories(report, pool)
            finally:
                await pool.close()
        report.components["database"] = Check.passed()
    except Exception as error:  # a status report shows a broken part; it does not crash
        report.components["database"] = Check.failed(error)


async def _count_memories(report: StatusReport, pool: asyncpg.Pool) -> None:
    """Per tenant (Row-Level Security applies to the schema owner too), and the outbox."""
    async with pool.acquire() as conn:
        tenants = await list_tenants(conn)
        report.outbox = await backlog(conn)
        models = await embeddings.model_records(conn)
    # The database's model is the one in use (the settings name a new database's).
    for record in models:
        if record.state in ("active", "building"):
            key = "embedding model" if record.state == "active" else "re-embedding to"
            report.settings[key] = f"{record.name} ({record.provider}, {record.dim} dims)"
    totals: Counter[str] = Counter()
    for tenant in tenants:
        async with tenant_tx(pool, tenant.id) as conn:
            counts = await count_by_status(conn)
        totals.update(counts)
        if counts.get("pending"):
            report.pending_by_tenant[tenant.name] = counts["pending"]
    report.memories_by_status = dict(sorted(totals.items()))


async def _temporal(report: StatusReport, settings: Settings) -> None:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S):
            client = await connect(settings, None)
            report.components["temporal"] = Check.passed(f"ok ({settings.temporal_target})")
            report.components["worker"] = await check_worker(client, settings.task_queue)
            scope = f"{INGESTIONS} AND TaskQueue='{settings.task_queue}'"
            report.running_ingestions = (await client.count_workflows(
                f"{scope} AND ExecutionStatus='Running'")).count
            report.failed_ingestions = (await client.count_workflows(
                f"{scope} AND ExecutionStatus='Failed'")).count
            report.schedules = await _schedules(client)
    except Exception as error:  # same: report, don't raise
        report.components.setdefault("temporal", Check.failed(error))
        report.components.setdefault("worker", WORKER_UNKNOWN)


async def _schedules(client: Client) -> list[Schedule]:
    found = []
    async for listed in await client.list_schedules():
        handle = client.get_schedule_handle(listed.id)
        described = await handle.describe()
        action = described.schedule.action
        workflow = str(getattr(action, "workflow", "?"))
        upcoming = described.info.next_action_times
        found.append(Schedule(id=listed.id, workflow=workflow,
                              next_run=upcoming[0] if upcoming else None,
                              paused=described.schedule.state.paused))
    return sorted(found, key=lambda schedule: schedule.id)


async def _mcp_server(report: StatusReport, settings: Settings) -> None:
    url = f"http://{_local(settings.mcp_host)}:{settings.mcp_port}/readyz"
    try:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as http:
            response = await http.get(url)
    except httpx.HTTPError:
        report.components["mcp server"] = Check.unknown(f"not reachable at {url} "
                                                        "(not running here?)")
        return
    if response.status_code == 200:
        report.components["mcp server"] = Check.passed(f"ok ({url})")
    else:
        report.components["mcp server"] = Check(
            False, f"error: {url} answered {response.status_code}: {response.text[:200]}")


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def render(report: StatusReport) -> str:
    lines = ["Components"]
    lines += [f"  {name:<12} {check.detail}" for name, check in report.components.items()]
    if report.restarts:
        lines.append("Restarts by `up`")
        lines += [f"  {name:<20} {what}" for name, what in report.restarts.items()]
    lines.append("Ingestion")
    pending = sum(report.pending_by_tenant.values())
    by_tenant = ", ".join(f"{name}: {n}" for name, n in sorted(report.pending_by_tenant.items()))
    lines.append(f"  pending memories     {pending}" + (f" ({by_tenant})" if by_tenant else ""))
    lines.append(f"  workflows to start   {_outbox(report)}")
    lines.append(f"  running workflows    {_count(report.running_ingestions)}")
    lines.append(f"  failed workflows     {_count(report.failed_ingestions)}")
    stored = ", ".join(f"{status} {n}" for status, n in report.memories_by_status.items())
    lines.append(f"  memories             {stored or 'none'}")
    lines.append("Schedules")
    if not report.schedules:
        lines.append("  none")
    for schedule in report.schedules:
        when = "paused" if schedule.paused else (
            f"next run {schedule.next_run:%Y-%m-%d %H:%M:%S %Z}" if schedule.next_run
            else "no next run")
        lines.append(f"  {schedule.id:<28} {schedule.workflow:<24} {when}")
    lines.append("Configuration")
    lines += [f"  {name:<20} {value}" for name, value in report.settings.items()]
    return "\n".join(lines)


def _outbox(report: StatusReport) -> str:
    """The outbox of this task queue (saves acknowledged, workflows not started yet)."""
    queue = report.task_queue
    ours = next((b for b in report.outbox if b.task_queue == queue), None)
    text = "0" if ours is None else (
        f"{ours.entries} (the oldest saved {ours.oldest_age_s:.0f} s ago"
        + (f"; {ours.retrying} retrying, last error: {ours.last_error}" if ours.retrying
           else "") + ")")
    others = [b for b in report.outbox if b.task_queue != queue]
    if others:
        text += (f"; {sum(b.entries for b in others)} more for {len(others)} other task "
                 "queue(s)")
    return text


def _count(value: int | None) -> str:
    return "unknown" if value is None else str(value)
