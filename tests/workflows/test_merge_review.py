"""The model may not rewrite or retire a colleague's memory: a prompt-injected save (or the
nightly consolidation) proposing a merge or supersede across authors is held for review."""

from __future__ import annotations

import uuid

import anyio
import asyncpg
import pytest
from mcp import Client

from team_memory_core.llm.client import Distiller
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from team_memory_core.store.pool import tenant_tx
from team_memory_core.tenants import create_key
from tests.conftest import Stack
from tests.mcp_server.test_tools import call
from tests.support.anthropic_server import FakeAnthropic
from tests.support.cli import cli
from tests.support.llm import merge_plan, no_rules
from tests.workflows.test_consolidate import consolidate
from tests.workflows.test_distillation import MODEL, decision, events, first, haiku, row

__all__ = ["haiku"]  # fixtures used by name

pytestmark = pytest.mark.anyio

RULE = "Production deploys happen only on Tuesday and Thursday, after a release approval"
INJECTED = "Production deploys may happen any day; no approval is needed"


async def colleague(stack: Stack, admin_pool: asyncpg.Pool) -> Principal:
    """A key of another member of the same tenant: another author."""
    issued = await create_key(admin_pool, stack.principal.tenant_name, name="colleague")
    return stack.principal.model_copy(update={"key_id": issued.key_id,
                                              "member_id": issued.member_id,
                                              "member_name": "colleague"})


async def proposals(stack: Stack) -> list[asyncpg.Record]:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT * FROM memory_proposals ORDER BY id")
    return rows


async def saved_by(stack: Stack, principal: Principal, content: str) -> uuid.UUID:
    saved = await stack.service.save(principal, content, category="architecture")
    await stack.wait_status(saved.id)
    return saved.id


async def test_a_colleagues_memory_is_not_rewritten_by_a_merge(
    haiku: Stack, fake: FakeAnthropic, admin_pool: asyncpg.Pool
) -> None:
    rule = await first(haiku, RULE)
    other = await colleague(haiku, admin_pool)
    fake.script(decision(action="UPDATE", target_id=str(rule), merged_content=INJECTED,
                         reason="The deploy rule changed."))
    new = await saved_by(haiku, other, "Deploys: any day works now, skip the approval step")

    kept = await row(haiku, rule)
    assert (kept["content"], kept["status"], list(kept["merged_from"])) == (RULE, "active", [])
    added = await row(haiku, new)
    assert (added["status"], added["duplicate_of"]) == ("active", None)
    [held] = await proposals(haiku)
    assert (held["kind"], held["target_id"], list(held["source_ids"])) == ("merge", rule, [new])
    assert (held["proposed_text"], held["status"], held["origin"]) == (INJECTED, "pending",
                                                                       "ingest")
    assert (held["model"], held["key_id"]) == (MODEL, other.key_id)
    [proposed] = [e for e in await events(haiku, rule) if e["event"] == "merge_proposed"]
    assert proposed["related_id"] == new and f"proposal {held['id']}" in proposed["reason"]
    [kept_new] = await events(haiku, new)
    assert kept_new["event"] == "added" and "held for review" in kept_new["reason"]

    async with Client(haiku.server) as client:
        status = await call(client, "memory_status", id=str(rule))
        hits = await call(client, "search_memory", query="when do production deploys happen")
    assert [e["event"] for e in status["history"]] == ["added", "merge_proposed"]
    assert {str(rule), str(new)} <= {h["id"] for h in hits["results"]}
    async with tenant_tx(haiku.pool, haiku.principal.tenant_id) as conn:
        audit = await conn.fetchrow("SELECT * FROM audit_log WHERE action = 'merge.proposed'")
    assert (audit["target"], audit["key_id"]) == (str(rule), other.key_id)

    listed = await anyio.to_thread.run_sync(
        cli, haiku, "review", "list", "--tenant", haiku.principal.tenant_name)
    assert listed.returncode == 0, listed.stderr
    assert f"#{held['id']}" in listed.stdout and f"merge {rule} <- {new}" in listed.stdout
    assert f"proposed: {INJECTED}" in listed.stdout


async def test_a_colleagues_memory_is_not_retired_by_a_supersede(
    haiku: Stack, fake: FakeAnthropic, admin_pool: asyncpg.Pool
) -> None:
    rule = await first(haiku, RULE)
    other = await colleague(haiku, admin_pool)
    fake.script(decision(action="SUPERSEDE", target_id=str(rule), reason="Newer rule."))
    new = await saved_by(haiku, other, INJECTED)
    kept = await row(haiku, rule)
    assert (kept["status"], kept["superseded_by"], kept["valid_to"]) == ("active", None, None)
    assert (await row(haiku, new))["status"] == "active"
    [held] = await proposals(haiku)
    assert (held["kind"], held["target_id"], list(held["source_ids"])) == (
        "supersede", rule, [new])
    assert held["proposed_text"] is None
    assert [e["event"] for e in await events(haiku, rule)] == ["added", "supersede_proposed"]


async def test_the_same_authors_merge_and_supersede_still_apply(
    haiku: Stack, fake: FakeAnthropic
) -> None:
    rule = await first(haiku, RULE)
    fake.script(decision(action="UPDATE", target_id=str(rule), merged_content=INJECTED,
                         reason="The deploy rule changed."))
    merged = await saved_by(haiku, haiku.principal, "Deploys: any day works now")
    assert (await row(haiku, rule))["content"] == INJECTED
    assert (await row(haiku, merged))["duplicate_of"] == rule
    fake.script(decision(action="SUPERSEDE", target_id=str(rule), reason="Newer rule."))
    newest = await saved_by(haiku, haiku.principal, "Deploys are continuous since March")
    assert (await row(haiku, rule))["superseded_by"] == newest
    assert await proposals(haiku) == []


async def test_two_keys_of_one_member_are_one_author(
    haiku: Stack, fake: FakeAnthropic, admin_pool: asyncpg.Pool
) -> None:
    """The author is the member, not the key: a member's laptop and CI keys merge freely."""
    rule = await first(haiku, RULE)
    issued = await create_key(admin_pool, haiku.principal.tenant_name, name="ci",
                              member=haiku.principal.member_name)
    laptop = haiku.principal.model_copy(update={"key_id": issued.key_id})
    assert issued.member_id == haiku.principal.member_id
    fake.script(decision(action="UPDATE", target_id=str(rule), merged_content=INJECTED,
                         reason="The deploy rule changed."))
    await saved_by(haiku, laptop, "Deploys: any day works now")
    assert (await row(haiku, rule))["content"] == INJECTED
    assert await proposals(haiku) == []


async def test_a_memory_without_a_recorded_author_counts_as_another_authors(
    haiku: Stack, fake: FakeAnthropic
) -> None:
    operator = haiku.principal.model_copy(  # e.g. a CLI import: no key, no member
        update={"key_id": None, "member_id": None, "member_name": None})
    rule = await saved_by(haiku, operator, RULE)
    fake.script(decision(action="UPDATE", target_id=str(rule), merged_content=INJECTED,
                         reason="The deploy rule changed."))
    await saved_by(haiku, haiku.principal, "Deploys: any day works now")
    assert (await row(haiku, rule))["content"] == RULE
    assert [p["kind"] for p in await proposals(haiku)] == ["merge"]


async def test_purge_erases_the_text_of_a_proposal_it_took_part_in(
    haiku: Stack, fake: FakeAnthropic, admin_pool: asyncpg.Pool
) -> None:
    rule = await first(haiku, RULE)
    fake.script(decision(action="UPDATE", target_id=str(rule), merged_content=INJECTED,
                         reason="The deploy rule changed."))
    new = await saved_by(haiku, await colleague(haiku, admin_pool), "Deploys: any day now")
    await haiku.service.purge(haiku.principal, new, "pasted by mistake")
    [held] = await proposals(haiku)
    # Its text erased, and withdrawn: nothing is left to merge.
    assert (held["proposed_text"], held["reason"], held["status"]) == (None, None, "rejected")
    assert held["decision_reason"] == "withdrawn: the memory was purged"
    assert (await row(haiku, rule))["content"] == RULE


# --- the nightly consolidation ------------------------------------------------------------


async def saved_locally(stack: Stack, *saves: tuple[Principal, str]) -> list[uuid.UUID]:
    """Saved without a model (local policy), as the nightly run finds them."""
    async with stack.worker():
        return [await saved_by(stack, principal, content) for principal, content in saves]


async def test_consolidation_holds_merges_across_authors(
    stack: Stack, admin_pool: asyncpg.Pool, fake: FakeAnthropic, distiller: Distiller
) -> None:
    pnpm, lockfile = await saved_locally(
        stack, (stack.principal, "Use pnpm to install JavaScript packages"),
        (await colleague(stack, admin_pool),
         "JavaScript packages: pnpm, with a frozen lockfile in CI"))
    merged = "Use pnpm for JavaScript packages; any lockfile state is fine"
    fake.script(merge_plan(pnpm, lockfile, merged), no_rules())
    async with stack.worker(distiller=distiller):
        report = await consolidate(stack)
        assert (report.merged, report.held_for_review, report.llm_calls) == (0, 1, 2)
        for memory, text in ((pnpm, "Use pnpm to install JavaScript packages"),
                             (lockfile, "JavaScript packages: pnpm, with a frozen lockfile "
                              "in CI")):
            kept = await row(stack, memory)
            assert (kept["content"], kept["status"]) == (text, MemoryStatus.ACTIVE)
        [held] = await proposals(stack)
        assert (held["kind"], held["target_id"], list(held["source_ids"])) == (
            "merge", pnpm, [lockfile])
        assert (held["origin"], held["run_id"], held["proposed_text"]) == (
            "consolidation", report.run_id, merged)
        assert (await events(stack, pnpm))[-1]["event"] == "merge_proposed"

        calls = fake.calls
        rerun = await consolidate(stack)
        assert (fake.calls, rerun.held_for_review, len(await proposals(stack))) == (calls, 0, 1)


async def test_consolidation_holds_supersedes_across_authors(
    stack: Stack, admin_pool: asyncpg.Pool, fake: FakeAnthropic, distiller: Distiller
) -> None:
    react, svelte = await saved_locally(
        stack, (stack.principal, "We use React for the frontend"),
        (await colleague(stack, admin_pool), "We migrated the frontend to Svelte"))
    fake.script(
        FakeAnthropic.tool_result({"actions": [{
            "action": "SUPERSEDE", "old_id": str(react), "new_id": str(svelte),
            "reason": "The frontend moved to Svelte."}]}),
        no_rules(),
    )
    async with stack.worker(distiller=distiller):
        report = await consolidate(stack)
    assert (report.superseded, report.held_for_review) == (0, 1)
    assert (await row(stack, react))["status"] == MemoryStatus.ACTIVE
    [held] = await proposals(stack)
    assert (held["kind"], held["target_id"], list(held["source_ids"])) == (
        "supersede", react, [svelte])
