"""The nightly consolidation schedule of each project (Temporal Schedules, not cron_schedule).

One schedule per (tenant, project), id ``consolidate/<tenant>/<project>``: created when a
project's first memory is committed and ensured again, with the current settings, whenever a
worker starts. docs/consolidation.md explains why per project.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from team_memory_core.contract import (
    CONSOLIDATE_WORKFLOW,
    consolidation_schedule_id,
    scope_attributes,
)
from team_memory_core.models.consolidation import ConsolidateInput, ConsolidationReport
from team_memory_core.settings import Settings
from team_memory_core.store import consolidation
from team_memory_core.store.pool import tenant_tx

log = logging.getLogger("team_memory_core.schedules")


def manual_workflow_id(tenant: str, project: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"consolidate/{tenant}/{project}/manual-{stamp}"


def nightly_schedule(settings: Settings, tenant: str, project: str) -> Schedule:
    hour, minute = (int(part) for part in settings.consolidation_time.split(":"))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            CONSOLIDATE_WORKFLOW,
            ConsolidateInput(tenant=tenant, project=project),
            id=consolidation_schedule_id(tenant, project),
            task_queue=settings.task_queue,
            typed_search_attributes=scope_attributes(tenant, project),
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(hour)],
                                            minute=[ScheduleRange(minute)])],
            time_zone_name=settings.consolidation_timezone,
        ),
        # A run still going at the next tick (a huge project) is left to finish.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedule(
    client: Client, settings: Settings, tenant: str, project: str, *, refresh: bool = False
) -> str:
    """Create the project's schedule; with ``refresh``, bring an existing one up to date with
    the settings (time, time zone, task queue) while keeping an operator's pause."""
    sid = consolidation_schedule_id(tenant, project)
    wanted = nightly_schedule(settings, tenant, project)
    try:
        await client.create_schedule(sid, wanted)
        log.info("created schedule %s (%s %s)", sid, settings.consolidation_time,
                 settings.consolidation_timezone)
    except ScheduleAlreadyRunningError:
        if refresh:
            await client.get_schedule_handle(sid).update(_keep_state(wanted))
    return sid


def _keep_state(wanted: Schedule) -> Callable[[ScheduleUpdateInput], ScheduleUpdate]:
    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(
            schedule=dataclasses.replace(wanted, state=current.description.schedule.state)
        )

    return update


async def ensure_all(client: Client, settings: Settings, pool: asyncpg.Pool) -> list[str]:
    """At worker start-up: one up-to-date schedule per project of every tenant."""
    async with pool.acquire() as conn:
        scopes = await consolidation.consolidation_scopes(conn)
    ensured = []
    for scope in scopes:
        sid = await ensure_schedule(client, settings, scope.tenant_name, scope.project,
                                    refresh=True)
        async with tenant_tx(pool, scope.tenant_id) as conn:
            await consolidation.mark_schedule_ensured(conn, scope.tenant_id, scope.project, sid)
        ensured.append(sid)
    return ensured


async def run_now(
    client: Client, settings: Settings, tenant: str, project: str, *, wait: bool
) -> tuple[str, ConsolidationReport | None]:
    """Start one project's consolidation at once (what `team-memory consolidate` does)."""
    workflow_id = manual_workflow_id(tenant, project)
    handle = await client.start_workflow(
        CONSOLIDATE_WORKFLOW, ConsolidateInput(tenant=tenant, project=project), id=workflow_id,
        task_queue=settings.task_queue, result_type=ConsolidationReport,
        search_attributes=scope_attributes(tenant, project),
    )
    return workflow_id, (await handle.result() if wait else None)
