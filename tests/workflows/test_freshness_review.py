"""The nightly review of memories whose files changed (docs/freshness.md): listed without a
model, judged by Claude Haiku (the scripted fake) with one, every change with its event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from mcp_server.file_states import FileStates, Report
from team_memory_core.llm.client import Distiller
from team_memory_core.llm.consolidate import TOOL as PLAN_TOOL
from team_memory_core.llm.freshness import TOOL as FRESHNESS_TOOL
from team_memory_core.llm.manifesto import TOOL as MANIFESTO_TOOL
from team_memory_core.models.anchors import AnchorInput, FileState, Freshness
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.models.principal import Principal
from team_memory_core.store.pool import tenant_tx
from team_memory_core.store.proposals import proposals
from team_memory_core.tenants import create_key
from tests.conftest import Stack
from tests.support.anthropic_server import Conversation, FakeAnthropic
from tests.workflows.test_consolidate import consolidate
from tests.workflows.test_distillation import events, row

pytestmark = pytest.mark.anyio

SAVED, NOW = "1" * 40, "2" * 40
REVIEW_TOOL = FRESHNESS_TOOL.name
RETRY = "Payment retries live in payments/retry.py: three attempts, exponential backoff."
CENTS = "parse_invoice in billing/parse.py returns integer cents."
EXPORT = "The nightly CSV export is written by jobs/export.py to the reports bucket."
MONEY = "parse_invoice now returns a Money object (amount and currency), not cents."
ARCHIVE_JOB = "jobs/export.py was removed: reports are built by the warehouse now."


async def anchored(stack: Stack, content: str, path: str, principal: Principal | None = None,
                   blob: str | None = SAVED) -> uuid.UUID:
    saved = await stack.service.save(principal or stack.principal, content,
                                     files=[AnchorInput(path=path, blob=blob)])
    await stack.wait_status(saved.id)
    return saved.id


async def report(stack: Stack, *states: FileState) -> None:
    """The hooks report these file states in a session."""
    await FileStates(stack.pool).apply(stack.principal, [
        Report("default", "s-7", [state], datetime.now(UTC)) for state in states])


def quiet(fake: FakeAnthropic) -> None:
    """The run's other model calls change nothing: no consolidation plan, no manifesto."""
    fake.default_for(PLAN_TOOL.name, FakeAnthropic.tool_result({"actions": []}))
    fake.default_for(MANIFESTO_TOOL.name, FakeAnthropic.tool_result({"rules": []}))


def reviews(fake: FakeAnthropic) -> list[Conversation]:
    return [c for c in fake.conversations if c.forced_tool == REVIEW_TOOL]


async def other_author(stack: Stack, admin_pool: asyncpg.Pool) -> Principal:
    issued = await create_key(admin_pool, stack.principal.tenant_name, name="colleague")
    return stack.principal.model_copy(update={"key_id": issued.key_id,
                                              "member_id": issued.member_id,
                                              "member_name": "colleague"})


async def test_without_a_model_changed_memories_are_listed_for_review(stack: Stack) -> None:
    async with stack.worker():
        retry = await anchored(stack, RETRY, "payments/retry.py")
        cents = await anchored(stack, CENTS, "billing/parse.py")
        await anchored(stack, EXPORT, "jobs/export.py")  # its file does not change
        await report(stack, FileState(path="payments/retry.py", blob=NOW),
                     FileState(path="billing/parse.py", blob=None))
        first = await consolidate(stack)
        again = await consolidate(stack)
    for run in (first, again):  # listed until a person (or the model) deals with them
        assert run.changed_files is not None and run.changed_files.policy == "local"
        assert run.changed_files.listed == [retry, cents]
        assert (run.changed_files.kept, run.changed_files.archived) == (0, 0)
    assert (await row(stack, cents))["freshness"] == Freshness.GONE
    assert (await row(stack, cents))["status"] == MemoryStatus.ACTIVE


async def test_haiku_keeps_revises_and_archives_each_with_an_event(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller, admin_pool: asyncpg.Pool
) -> None:
    colleague = await other_author(stack, admin_pool)
    async with stack.worker():
        retry = await anchored(stack, RETRY, "payments/retry.py")
        cents = await anchored(stack, CENTS, "billing/parse.py")
        export = await anchored(stack, EXPORT, "jobs/export.py")
        await report(stack, FileState(path="payments/retry.py", blob=NOW),
                     FileState(path="billing/parse.py", blob=NOW),
                     FileState(path="jobs/export.py", blob=None))
        # What the team saved about those files since, against their new state.
        await anchored(stack, MONEY, "billing/parse.py", blob=NOW)
        await anchored(stack, ARCHIVE_JOB, "jobs/export.py", colleague, blob=None)
    revised = "parse_invoice in billing/parse.py returns a Money object (amount, currency)."
    quiet(fake)
    fake.script_for(REVIEW_TOOL, FakeAnthropic.tool_result({"judgments": [
        {"id": str(retry), "verdict": "KEEP", "reason": "A change rarely moves the retries."},
        {"id": str(cents), "verdict": "REVISE", "revised_content": revised,
         "reason": "A newer memory says it returns Money."},
        {"id": str(export), "verdict": "ARCHIVE", "reason": "Its file is gone."},
    ]}, input_tokens=700, output_tokens=90))
    async with stack.worker(distiller=distiller):
        run = await consolidate(stack)
        asked = reviews(fake)
        rerun = await consolidate(stack)
    review = run.changed_files
    assert review is not None and review.policy == "haiku"
    assert review.listed == [retry, cents, export]
    assert (review.kept, review.revise_proposed, review.archived, review.archive_proposed) == \
        (1, 1, 0, 1)
    assert review.input_tokens == 700 and run.input_tokens >= 700

    [request] = asked
    shown = [json.loads(line) for line in request.last_user_text.splitlines()
             if line.startswith("{")]
    assert [m["id"] for m in shown] == [str(retry), str(cents), str(export)]
    assert shown[1]["files"][0]["path"] == "billing/parse.py"
    assert shown[1]["newer_on_same_files"] == [MONEY]
    assert shown[2]["files"][0]["state"] == "gone"

    # KEEP: anchored to the content the hooks reported, fresh again.
    assert (await row(stack, retry))["freshness"] == Freshness.FRESH
    assert (await events(stack, retry))[-1]["event"] == "anchor_kept"
    # REVISE: nothing rewritten, a proposal holds the text.
    assert (await row(stack, cents))["content"] == CENTS
    revise = (await events(stack, cents))[-1]
    assert (revise["event"], revise["after_text"]) == ("revise_proposed", revised)
    # ARCHIVE suggested by another author's memory: held for review, not applied.
    assert (await row(stack, export))["status"] == MemoryStatus.ACTIVE
    assert (await events(stack, export))[-1]["event"] == "archive_proposed"
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        held = await proposals(conn, "pending", 10)
    assert sorted((p.kind, p.target_id) for p in held) == sorted(
        [("revise", cents), ("archive", export)])
    # Judged once: the next night asks nothing about them (their files did not change again).
    assert reviews(fake) == asked
    assert rerun.changed_files is not None and rerun.changed_files.listed == []


async def test_archive_applies_when_only_its_author_suggests_it(
    stack: Stack, fake: FakeAnthropic, distiller: Distiller
) -> None:
    async with stack.worker():
        export = await anchored(stack, EXPORT, "jobs/export.py")
        await report(stack, FileState(path="jobs/export.py", blob=None))
    quiet(fake)
    fake.script_for(REVIEW_TOOL, FakeAnthropic.tool_result({"judgments": [
        {"id": str(export), "verdict": "ARCHIVE", "reason": "Its file is gone."}]}))
    async with stack.worker(distiller=distiller):
        run = await consolidate(stack)
    assert run.changed_files is not None and run.changed_files.archived == 1
    assert (await row(stack, export))["status"] == MemoryStatus.ARCHIVED
    archived = (await events(stack, export))[-1]
    assert (archived["event"], archived["policy"]) == ("archived", "haiku")
    assert archived["reason"] == "its files changed: Its file is gone."
