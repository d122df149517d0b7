"""The nightly consolidation: schedules on the dev server, the Consolidate workflow with and
without Claude Haiku (the fake Anthropic API), idempotent reruns, the manifesto over MCP."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from mcp import Client
from temporalio.client import WorkflowExecutionStatus

from team_memory.embedded import temporal_binary
from team_memory_core import schedules
from team_memory_core.contract import consolidation_schedule_id
from team_memory_core.llm.client import Distiller
from team_memory_core.models.consolidation import ConsolidateInput, ConsolidationReport
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Stack
from tests.processes import child_env
from tests.support.anthropic_server import FakeAnthropic
from tests.support.llm import calls_but_screenings, merge_plan, no_rules
from tests.workflows.test_distillation import MODEL, events, row
from workflows.consolidate import Consolidate

pytestmark = pytest.mark.anyio


async def save(stack: Stack, content: str, **options: object) -> uuid.UUID:
    saved = await stack.service.save(stack.principal, content, **options)  # type: ignore[arg-type]
    await stack.wait_status(saved.id)
    return saved.id


async def consolidate(stack: Stack, **options: object) -> ConsolidationReport:
    job = ConsolidateInput(tenant=stack.principal.tenant_name, project="default",
                           **options)  # type: ignore[arg-type]
    return await stack.client.execute_workflow(
        Consolidate.run, job,
        id=f"consolidate/{stack.principal.tenant_name}/default/test-{uuid.uuid4()}",
        task_queue=stack.settings.task_queue)


async def snapshot(stack: Stack) -> list[tuple[object, ...]]:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        rows = await conn.fetch("SELECT id, status, content, updated_at, duplicate_of,"
                                " superseded_by FROM memories ORDER BY id")
        events_count = await conn.fetchval("SELECT count(*) FROM memory_events")
        manifesto = await conn.fetchval("SELECT generated_at FROM manifestos")
    return [tuple(r) for r in rows] + [(events_count, manifesto)]


async def test_local_run_folds_decays_and_writes_a_manifesto(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller
) -> None:
    # An API outage at ingest keeps a near duplicate (flagged for the nightly review).
    async with stack.worker(distiller=distiller):
        kept = await save(stack, "All API timestamps are UTC in ISO 8601 format", importance=4)
        fake.script(FakeAnthropic.text("I cannot decide."))
        again = await save(stack, "All API timestamps are in UTC, ISO 8601 format",
                           importance=3)
    old = datetime.now(UTC) - timedelta(days=400)
    async with stack.worker():  # no key: the local policy
        stale = await save(stack, "The old wiki lives on Confluence", importance=1,
                           occurred_at=old)
        durable = await save(stack, "Never deploy on Fridays", importance=5, occurred_at=old)
        await save(stack, "Services talk over gRPC inside the cluster", importance=3)
        assert (await row(stack, again))["needs_review"] is True

        report = await consolidate(stack, page_size=2)
        assert report.policy == "local" and report.llm_calls == 0
        assert any("ANTHROPIC_API_KEY" in note for note in report.notes)
        assert report.pages >= 2  # continue-as-new per page
        assert (report.folded, report.revisited, report.archived) == (1, 1, 1)
        assert (await row(stack, again))["duplicate_of"] == kept
        assert {"revisited", "duplicate"} <= {e["event"] for e in await events(stack, again)}
        assert (await row(stack, stale))["status"] == MemoryStatus.ARCHIVED
        assert (await row(stack, durable))["status"] == MemoryStatus.ACTIVE
        archived = (await events(stack, stale))[-1]
        assert archived["event"] == "archived" and "decayed" in archived["reason"]
        assert report.manifesto == "regenerated" and report.manifesto_policy == "local"
        assert report.manifesto_rules == 3

        before = await snapshot(stack)
        rerun = await consolidate(stack, page_size=2)
        assert rerun.changes == 0 and rerun.clusters_reviewed == 0
        assert rerun.manifesto == "unchanged"
        assert await snapshot(stack) == before

    async with Client(stack.server) as client:
        resource = await client.read_resource("memory://manifesto")
        text = resource.contents[0].text  # type: ignore[union-attr]
        prompt = await client.get_prompt("manifesto", {})
    # ranked by importance x recency: the old importance-5 rule comes after recent ones
    assert "1. All API timestamps are UTC in ISO 8601 format" in text
    assert "Never deploy on Fridays" in text
    assert "Confluence" not in text
    assert "Never deploy on Fridays" in prompt.messages[0].content.text  # type: ignore[union-attr]
    assert calls_but_screenings(fake) == 1


async def test_haiku_supersedes_react_with_svelte_and_writes_the_manifesto(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller
) -> None:
    async with stack.worker():  # saved without a key: the local policy keeps both
        react = await save(stack, "We use React for the frontend", category="architecture",
                           importance=4)
        svelte = await save(stack, "We migrated the frontend to Svelte",
                            category="architecture", importance=4)
    assert (await row(stack, react))["status"] == MemoryStatus.ACTIVE
    fake.script(
        FakeAnthropic.tool_result({"actions": [{
            "action": "SUPERSEDE", "old_id": str(react), "new_id": str(svelte),
            "reason": "The frontend moved to Svelte."}]}, input_tokens=500, output_tokens=60),
        FakeAnthropic.tool_result({"rules": [{
            "text": "Build frontend features in Svelte.", "source_ids": [str(svelte)]}]},
            input_tokens=300, output_tokens=30),
    )
    async with stack.worker(distiller=distiller):
        report = await consolidate(stack)
        assert (report.superseded, report.llm_calls) == (1, 2)
        assert (report.input_tokens, report.output_tokens) == (800, 90)
        old = await row(stack, react)
        assert (old["status"], old["superseded_by"]) == ("superseded", svelte)
        assert old["valid_to"] is not None
        hits = await stack.service.search(stack.principal, "frontend framework")
        assert [h.id for h in hits] == [svelte]
        superseded = (await events(stack, react))[-1]
        assert (superseded["event"], superseded["model"]) == ("superseded", MODEL)
        assert superseded["before_text"] == "We use React for the frontend"

        calls = fake.calls
        rerun = await consolidate(stack)
        assert fake.calls == calls  # nothing new to ask the model
        assert (rerun.changes, rerun.llm_calls, rerun.manifesto) == (0, 0, "unchanged")
    view = await stack.service.manifesto(stack.principal, None)
    assert [r.text for r in view.rules] == ["Build frontend features in Svelte."]
    assert view.policy == "haiku"
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        runs = await conn.fetch("SELECT input_tokens, output_tokens, token_budget, status"
                                " FROM consolidation_runs ORDER BY started_at")
    assert [tuple(r) for r in runs] == [(500 + 300, 90, 200_000, "completed"),
                                       (0, 0, 200_000, "completed")]


async def test_haiku_merge_keeps_provenance(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller
) -> None:
    async with stack.worker():
        one = await save(stack, "Use pnpm to install JavaScript packages")
        two = await save(stack, "JavaScript packages: pnpm, with a frozen lockfile in CI")
    merged = "Use pnpm to install JavaScript packages, with a frozen lockfile in CI"
    fake.script(merge_plan(one, two, merged), no_rules())
    async with stack.worker(distiller=distiller):
        report = await consolidate(stack)
    assert report.merged == 1
    kept = await row(stack, one)
    assert (kept["content"], list(kept["merged_from"])) == (merged, [two])
    gone = await row(stack, two)
    assert (gone["status"], gone["duplicate_of"]) == ("duplicate", one)
    merge = (await events(stack, one))[-1]
    assert (merge["before_text"], merge["after_text"]) == (
        "Use pnpm to install JavaScript packages", merged)


async def test_budget_and_model_failures_fall_back_to_local(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller
) -> None:
    async with stack.worker():
        await save(stack, "Queues are Redis streams")
        await save(stack, "Background work goes through Redis streams consumers")
    async with stack.worker(distiller=distiller):
        broke = await consolidate(stack, token_budget=0)
        assert fake.calls == 0 and broke.skipped_for_budget >= 1
        assert broke.manifesto_policy == "local"
        # the ingest decision, then the review and the manifesto: all malformed
        fake.script(*[FakeAnthropic.text("no tool", input_tokens=70)] * 8)
        await save(stack, "Redis streams are trimmed to 24 hours")
        report = await consolidate(stack)
    assert report.llm_failures >= 1 and report.manifesto_policy == "local"
    assert report.input_tokens >= 70  # a malformed reply is billed, and counted


async def test_schedule_created_on_first_memory_and_triggered_by_the_cli(running: Stack) -> None:
    saved = await running.service.save(running.principal, "Schedules run consolidation nightly")
    await (await running.started(saved.workflow_id)).result()  # commit, then schedule
    tenant = running.principal.tenant_name
    sid = consolidation_schedule_id(tenant, "default")
    handle = running.client.get_schedule_handle(sid)
    described = await handle.describe()
    spec = described.schedule.spec
    assert spec.time_zone_name == running.settings.consolidation_timezone
    assert spec.calendars[0].hour[0].start == 3 and spec.calendars[0].minute[0].start == 0
    cli = [str(temporal_binary()), "--address", running.settings.temporal_target]
    try:
        listed = await anyio.run_process([*cli[:1], "schedule", "list", *cli[1:]])
        assert sid in listed.stdout.decode()
        first = await _trigger(running, cli, sid, already=0)
        assert first.policy == "local" and first.tenant == tenant
        second = await _trigger(running, cli, sid, already=1)
        assert (second.changes, second.clusters_reviewed) == (0, 0)
        assert second.manifesto == "unchanged"

        manual = f"consolidate/{tenant}/default/manual-test"
        await anyio.run_process([*cli[:1], "workflow", "start", "--type", "Consolidate",
                                 "--task-queue", running.settings.task_queue,
                                 "--workflow-id", manual, "--input",
                                 f'{{"tenant": "{tenant}", "project": "default"}}', *cli[1:]])
        # Unencrypted input is refused (docs/security.md): `team-memory consolidate` is the
        # operator's way to start one (test_cli_consolidate_waits_and_prints_the_report).
        result = await anyio.run_process([*cli[:1], "workflow", "result", "--workflow-id",
                                          manual, "--output", "json", *cli[1:]], check=False)
        assert result.returncode != 0
        assert "PayloadRefused" in (result.stdout + result.stderr).decode()

        await handle.pause(note="operator pause")
        ensured = await schedules.ensure_all(running.client, running.settings, running.pool)
        assert sid in ensured
        assert (await handle.describe()).schedule.state.paused  # start-up keeps the pause
    finally:
        await handle.delete()


async def _trigger(stack: Stack, cli: list[str], sid: str, already: int) -> ConsolidationReport:
    with anyio.fail_after(30):
        await anyio.run_process([*cli[:1], "schedule", "trigger", "--schedule-id", sid,
                                 *cli[1:]])
    query = f"WorkflowType='Consolidate' AND TenantName='{stack.principal.tenant_name}'"
    for _ in range(300):
        runs = [w async for w in stack.client.list_workflows(query)]
        done = [w for w in runs if w.status == WorkflowExecutionStatus.COMPLETED]
        if len(done) > already:
            newest = max(done, key=lambda w: w.start_time)
            return await stack.client.get_workflow_handle(
                newest.id, result_type=ConsolidationReport).result()
        await asyncio.sleep(0.1)
    raise AssertionError("the triggered consolidation did not complete")


async def test_cli_consolidate_waits_and_prints_the_report(running: Stack) -> None:
    await save(running, "The CLI wraps the Consolidate workflow")
    env = child_env(running.settings)
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "team_memory", "consolidate", "--project", "default",
             "--tenant", running.principal.tenant_name, "--wait"], env=env)
    out = done.stdout.decode()
    assert f"started consolidate/{running.principal.tenant_name}/default/manual-" in out
    report = ConsolidationReport.model_validate_json(out.split("\n", 1)[1])
    assert report.policy == "local" and report.manifesto == "regenerated"
