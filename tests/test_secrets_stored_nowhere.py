"""The secret corpus end to end: every format, entering by every door that stores text (a
save's content, tags and source; the model's merged text at ingest; a captured session's
events and observations; the nightly consolidation's merge and manifesto), is found in no
column of any table and in no Temporal workflow history."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest
from pydantic import SecretStr
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from mcp_server.capture import CaptureService, HookEvent, HookEvents
from mcp_server.memories import MemoryService
from team_memory_core.contract import TENANT_KEY
from team_memory_core.hook_protocol import EventKind
from team_memory_core.llm.client import Distiller
from team_memory_core.models.consolidation import ConsolidateInput, ConsolidationReport
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Stack
from tests.support.anthropic_server import Conversation, FakeAnthropic, Reply
from tests.support.llm import answer_screenings, merge_plan
from tests.support.secret_corpus import SECRETS, Secret
from tests.support.stored import leaks, stored_columns, workflow_histories
from workflows.consolidate import Consolidate
from workflows.worker import running_worker

pytestmark = pytest.mark.anyio

MODEL = "claude-haiku-4-5"
INGEST_TOOL = "record_ingest_decision"
ADD = FakeAnthropic.tool_result({"action": "ADD", "reason": "a separate fact"})


@dataclass
class Haiku:
    stack: Stack
    service: MemoryService
    fake: FakeAnthropic

    async def save(self, content: str, project: str, **options: object) -> uuid.UUID:
        saved = await self.service.save(self.stack.principal, content, project=project,
                                        **options)  # type: ignore[arg-type]
        return saved.id

    async def settled(self, project: str, count: int, timeout: float = 180) -> None:
        """Until ``count`` memories of the project exist and none is pending."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with tenant_tx(self.stack.pool, self.stack.principal.tenant_id) as conn:
                row = await conn.fetchrow(
                    "SELECT count(*) AS total, count(*) FILTER (WHERE status = 'pending')"
                    " AS pending FROM memories WHERE project = $1", project)
            assert row is not None
            if row["total"] >= count and row["pending"] == 0:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{project}: {dict(row)} after {timeout}s")
            await asyncio.sleep(0.2)


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        server.default_for(INGEST_TOOL, ADD)
        answer_screenings(server)
        yield server


@pytest.fixture
async def haiku(stack: Stack, fake: FakeAnthropic) -> AsyncIterator[Haiku]:
    settings = stack.settings.model_copy(update={
        "anthropic_api_key": SecretStr("sk-test"), "anthropic_base_url": fake.base_url,
        "capture_batch_events": 12, "manifesto_max_rules": 50,
        "manifesto_token_budget": 20_000})
    service = MemoryService(settings=settings, pool=stack.pool, temporal=stack.client,
                            embedder=stack.embedder)
    async with Distiller(api_key="sk-test", model=MODEL, base_url=fake.base_url,
                         timeout_s=10) as distiller, \
            running_worker(stack.client, settings, stack.pool, stack.embedder, distiller):
        yield Haiku(stack, service, fake)


async def assert_stored_nowhere(haiku: Haiku, admin: asyncpg.Pool, *, workflows: int,
                                seen: str) -> None:
    """No secret (nor a piece of a long one) in the database or the tenant's histories; the
    ``seen`` text (stored beside the secrets) proves the scans read the stored text."""
    columns = await stored_columns(admin)
    histories = await workflow_histories(haiku.stack.client, haiku.stack.principal.tenant_name)
    assert len(histories) >= workflows
    assert any(seen in text for text in columns.values())
    assert any(seen.encode() in history for history in histories.values())
    needles = {needle for case in SECRETS for needle in (case.secret, case.fragment)}
    assert leaks(needles, {**columns, **histories}) == []


def chunks(cases: Sequence[Secret], size: int) -> list[list[Secret]]:
    return [list(cases[i:i + size]) for i in range(0, len(cases), size)]


async def test_saved_content_tags_and_source(haiku: Haiku, admin_pool: asyncpg.Pool) -> None:
    results = await asyncio.gather(*(haiku.service.save(
        haiku.stack.principal, f"{case.name} note: {case.text}", project="corpus-save",
        tags=["corpus", case.text], source=case.text if len(case.text) <= 200 else None)
        for case in SECRETS))
    for case, saved in zip(SECRETS, results, strict=True):
        assert case.kind in saved.redacted, case.name
    await haiku.settled("corpus-save", len(SECRETS))
    async with tenant_tx(haiku.stack.pool, haiku.stack.principal.tenant_id) as conn:
        tags = await conn.fetch("SELECT tags FROM memories WHERE project = 'corpus-save'")
    assert all(len(row["tags"]) == 2 and row["tags"][1].startswith("redacted:") for row in tags)
    await assert_stored_nowhere(haiku, admin_pool, workflows=len(SECRETS),
                                seen="anthropic_api_key note")


async def test_the_models_merged_text_and_reason(
    haiku: Haiku, admin_pool: asyncpg.Pool
) -> None:
    base = await haiku.save("Release notes are kept in CHANGELOG.md", "corpus-merge")
    await haiku.settled("corpus-merge", 1)
    by_name = {case.name: case for case in SECRETS}

    def merge_of(conversation: Conversation) -> Reply:
        """Each memory's own merge, by its name: a decide call retried under load (an activity
        timed out after the reply was sent) must not shift the answers of the others."""
        new = conversation.last_user_text.split("<new_memory>", 1)[1]
        case = by_name[re.search(r"Release notes detail (\w+)", new)[1]]  # type: ignore[index]
        return FakeAnthropic.tool_result({
            "action": "UPDATE", "target_id": str(base),
            "merged_content": f"Release notes are kept in CHANGELOG.md ({case.name}: {case.text})",
            "reason": case.text if len(case.text) <= 400 else "merged"})

    haiku.fake.when(lambda c: c.forced_tool == INGEST_TOOL
                    and "Release notes detail" in c.last_user_text, merge_of)
    await asyncio.gather(*(haiku.save(f"Release notes detail {case.name}", "corpus-merge")
                           for case in SECRETS))
    await haiku.settled("corpus-merge", len(SECRETS) + 1)
    async with tenant_tx(haiku.stack.pool, haiku.stack.principal.tenant_id) as conn:
        kept = await conn.fetchrow("SELECT content, merged_from FROM memories WHERE id = $1",
                                   base)
        merges = await conn.fetchval("SELECT count(*) FROM memory_events WHERE memory_id = $1"
                                     " AND event = 'merged'", base)
    assert kept is not None and len(kept["merged_from"]) == merges == len(SECRETS)
    assert "[REDACTED:" in kept["content"]
    await assert_stored_nowhere(haiku, admin_pool, workflows=len(SECRETS) + 1,
                                seen="Release notes are kept in CHANGELOG.md (")


async def test_captured_session_events_and_observations(
    haiku: Haiku, admin_pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    events = [HookEvent(key=f"e{n}", session_id="corpus-session", kind=EventKind.TOOL,
                        project="corpus-capture", tool="Bash", files=[case.text],
                        summary=f"ran {case.text}", at=now)
              for n, case in enumerate(SECRETS)]
    stop = HookEvent(key="stop", session_id="corpus-session", kind=EventKind.STOP,
                     project="corpus-capture", at=now)
    # One distillation per batch of 12 events; each observes 12 of the corpus texts.
    haiku.fake.script_for("record_observations", *(FakeAnthropic.tool_result({"observations": [
        {"type": "fact", "content": f"{case.name}: {case.text}"[:500], "importance": 3}
        for case in batch]}) for batch in chunks(SECRETS, 12)))
    capture = CaptureService(haiku.service)
    accepted = await capture.accept(haiku.stack.principal, HookEvents(events=[*events, stop]))
    assert accepted.capture and accepted.accepted == len(SECRETS) + 1
    await haiku.settled("corpus-capture", len(SECRETS))
    await assert_stored_nowhere(haiku, admin_pool, workflows=len(SECRETS) + 1,
                                seen="anthropic_api_key: ")


def plan(keep: uuid.UUID, other: uuid.UUID, cases: Sequence[Secret]) -> Reply:
    text = "Staging deploys run from main. " + " ".join(f"{c.name}: {c.text}" for c in cases)
    return merge_plan(keep, other, text, reason=cases[0].text)


def manifesto(keep: uuid.UUID, cases: Sequence[Secret]) -> Reply:
    return FakeAnthropic.tool_result({"rules": [
        {"text": case.text, "source_ids": [str(keep)]}
        for case in cases if len(case.text) <= 200]})


async def test_consolidation_merge_and_manifesto(
    haiku: Haiku, admin_pool: asyncpg.Pool
) -> None:
    groups = chunks(SECRETS, 40)  # a manifesto holds at most 50 rules
    for number, cases in enumerate(groups):
        project = f"corpus-consolidate-{number}"
        keep = await haiku.save("Staging deploys run from the main branch", project)
        await haiku.settled(project, 1)
        other = await haiku.save("Staging deploys run from main", project)
        await haiku.settled(project, 2)
        haiku.fake.script_for("record_consolidation_plan", plan(keep, other, cases))
        haiku.fake.script_for("record_manifesto", manifesto(keep, cases))
        tenant = haiku.stack.principal.tenant_name
        report: ConsolidationReport = await haiku.stack.client.execute_workflow(
            Consolidate.run, ConsolidateInput(tenant=tenant, project=project),
            id=f"consolidate/{tenant}/{project}/corpus-{uuid.uuid4()}",
            task_queue=haiku.stack.settings.task_queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(TENANT_KEY, tenant)]))
        assert (report.merged, report.manifesto_policy) == (1, "haiku")
        assert report.manifesto_rules == sum(len(c.text) <= 200 for c in cases)
    async with tenant_tx(haiku.stack.pool, haiku.stack.principal.tenant_id) as conn:
        statuses = await conn.fetch("SELECT status FROM memories")
    assert sorted(r["status"] for r in statuses) == [MemoryStatus.ACTIVE] * len(groups) + [
        MemoryStatus.DUPLICATE] * len(groups)
    await assert_stored_nowhere(haiku, admin_pool, workflows=3 * len(groups),
                                seen="Staging deploys run")
