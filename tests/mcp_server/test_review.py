"""Promotion and review: a personal memory promoted to its project or the team, at once in an
open project; in a reviewed project it (and an observation captured from a session) waits in
the review queue until another member approves it, with audit rows and history; the memory
browser shows and acts on the queue (headless Chromium)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client

from mcp_server.capture import CaptureService, ContextRequest
from mcp_server.sharing import SharingService
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Stack, new_member
from tests.mcp_server.conftest import ONLY_A, TwoMembers
from tests.mcp_server.test_capture import DECISION, PROJECT, serving
from tests.mcp_server.test_http import HttpServer, http_server
from tests.mcp_server.test_tools import call, call_error
from tests.support.anthropic_server import FakeAnthropic
from tests.support.cli import cli

pytestmark = pytest.mark.anyio
__all__ = ["http_server"]  # the fixture, imported for these tests

NOTE = "The zebrafish release train leaves every second Wednesday at noon"


async def audit(stack: Stack, memory_id: str | uuid.UUID) -> list[str]:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        rows = await conn.fetch("SELECT action, outcome FROM audit_log WHERE target = $1"
                                " ORDER BY id", str(memory_id))
    return [f"{r['action']}:{r['outcome']}" for r in rows]


async def history(stack: Stack, memory_id: str | uuid.UUID) -> list[str]:
    report = await stack.service.status(stack.principal, uuid.UUID(str(memory_id)))
    return [event.event for event in report.history]


async def reviewed(stack: Stack, project: str = "default") -> None:
    done = await anyio.to_thread.run_sync(
        cli, stack, "project", "set", project, "--tenant", stack.principal.tenant_name,
        "--review", "reviewed")
    assert done.returncode == 0 and "review reviewed" in done.stdout, done.stderr


async def test_an_open_project_shares_a_promotion_at_once(two_members: TwoMembers) -> None:
    a, personal = two_members.a, two_members.personal_id
    async with Client(two_members.b_server) as client:
        refused = await call_error(client, "promote_memory", id=personal)
    async with Client(a.server) as client:
        shared_already = await call_error(client, "promote_memory", id=two_members.project_id)
        team = await call_error(client, "promote_memory", id=personal, scope="team")
        done = await call(client, "promote_memory", id=personal)
    assert "no memory" in refused
    assert "shared already" in shared_already and "belongs to its repository" in team
    assert done["status"] == "shared" and done["scope"] == "project"
    shared = done["shared_id"]
    assert await a.wait_status(uuid.UUID(shared)) is MemoryStatus.ACTIVE
    async with Client(two_members.b_server) as client:
        seen = await call(client, "get_memory", id=shared)
        found = await call(client, "search_memory", query="zebrafish signing keys")
    assert (seen["content"], seen["author"], seen["scope"]) == (ONLY_A, "default", "project")
    assert seen["files"] == [{"path": "billing/keys.py"}]
    assert found["results"][0]["id"] == shared
    old = await a.service.get(a.principal, uuid.UUID(personal), include_history=True)
    assert (old.status, old.superseded_by) == (MemoryStatus.SUPERSEDED, uuid.UUID(shared))
    assert (await history(a, personal))[-1] == "promoted"
    assert "promoted" in await history(a, shared)
    assert "promote:ok" in await audit(a, personal)


async def test_a_reviewed_project_holds_a_promotion_until_another_member_approves(
    two_members: TwoMembers,
) -> None:
    a, b = two_members.a, two_members.b
    await reviewed(a)
    note = await a.service.save(a.principal, NOTE, scope="personal")
    assert await a.wait_status(note.id) is MemoryStatus.ACTIVE
    async with Client(a.server) as client:
        waiting = await call(client, "promote_memory", id=str(note.id))
        again = await call_error(client, "promote_memory", id=str(note.id))
        own_queue = await call(client, "review_memories")
        self_approval = await call_error(client, "approve_memory", id=str(note.id))
    assert waiting["status"] == "waiting" and "waiting for review already" in again
    assert [(w["id"], w["yours"]) for w in own_queue["waiting"]] == [(str(note.id), True)]
    assert "another member must approve" in self_approval
    async with Client(two_members.b_server) as client:
        hidden = await call(client, "search_memory", query="release train Wednesday")
        queue = await call(client, "review_memories")
        approved = await call(client, "approve_memory", id=str(note.id))
        twice = await call_error(client, "approve_memory", id=str(note.id))
    assert all(r["id"] != str(note.id) for r in hidden["results"])
    [item] = queue["waiting"]
    assert (item["content"], item["author"], item["cause"], item["yours"]) == (
        NOTE, "default", "promotion", False)
    assert approved["status"] == "shared" and "waiting for review" in twice
    shared = uuid.UUID(approved["shared_id"])
    assert await a.wait_status(shared) is MemoryStatus.ACTIVE
    found = await b_search(two_members, "release train Wednesday")
    assert found[0] == str(shared)
    # Every step, refusals included: promoted twice, approved by its author, approved twice.
    assert await audit(a, note.id) == [
        "save:ok", "promote.proposed:ok", "promote:rejected", "promote.approve:denied",
        "promote.approved:ok", "promote.approve:rejected"]
    assert await history(a, note.id) == ["added", "promote_proposed", "promoted"]
    async with tenant_tx(a.pool, a.principal.tenant_id) as conn:
        row = await conn.fetchrow("SELECT status, decided_by, result_id FROM memory_proposals"
                                  " WHERE target_id = $1", note.id)
    assert dict(row) == {"status": "approved", "decided_by": "member:bob", "result_id": shared}
    assert b.member_name == "bob"


async def two_waiting(a: Stack) -> tuple[uuid.UUID, uuid.UUID]:
    """Two personal memories of A promoted in a reviewed project: waiting for review."""
    await reviewed(a)
    sharing = SharingService(a.service)
    ids = []
    for text in (NOTE, "Our zebrafish mascot is called Zed"):
        saved = await a.service.save(a.principal, text, scope="personal")
        assert await a.wait_status(saved.id) is MemoryStatus.ACTIVE
        assert (await sharing.promote(a.principal, saved.id)).status == "waiting"
        ids.append(saved.id)
    return ids[0], ids[1]


async def b_search(two: TwoMembers, query: str) -> list[str]:
    async with Client(two.b_server) as client:
        found = await call(client, "search_memory", query=query)
    return [r["id"] for r in found["results"]]


async def test_a_rejected_or_forgotten_promotion_stays_personal(
    two_members: TwoMembers,
) -> None:
    a = two_members.a
    sharing = SharingService(a.service)
    rejected, forgotten = await two_waiting(a)
    async with Client(two_members.b_server) as client:
        no_reason = await call_error(client, "reject_memory", id=str(rejected), reason=" ")
        done = await call(client, "reject_memory", id=str(rejected),
                          reason="a personal habit, not a team rule")
    assert "reason" in no_reason and done["status"] == "rejected"
    await a.service.forget(a.principal, forgotten, "wrong")
    assert await sharing.queue(two_members.b) == []  # rejected, and withdrawn by the forget
    found = await b_search(two_members, "zebrafish release train mascot")
    assert not {str(rejected), str(forgotten)} & set(found)
    kept = await a.service.get(a.principal, rejected)
    assert kept.scope == "personal" and kept.status is MemoryStatus.ACTIVE
    assert (await history(a, rejected))[-1] == "promote_rejected"
    assert (await audit(a, rejected))[-1] == "promote.rejected:ok"


async def test_an_observation_captured_in_a_reviewed_project_waits_for_review(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path, admin_pool: asyncpg.Pool
) -> None:
    await reviewed(stack, PROJECT)
    b, _ = await new_member(admin_pool, stack.principal, "bob")
    async with serving(stack, fake, tmp_path) as cap:
        session_id, captured = await cap.replay_recorded_session()
        sharing = SharingService(stack.service)
        queue = await sharing.queue(b)
        context = await cap_context(cap, b)
        decision = next(r for r in captured if r.content == DECISION)
        assert {r.scope for r in captured} == {"personal"}
        assert {(w.id, w.cause, w.author) for w in queue} == {
            (r.id, "capture", "default") for r in captured}
        assert DECISION not in context
        approved = await sharing.approve(b, decision.id)
        assert approved.shared_id is not None
        assert await stack.wait_status(approved.shared_id) is MemoryStatus.ACTIVE
        shared = await stack.service.get(b, approved.shared_id)
        assert (shared.origin, shared.origin_session) == ("capture", session_id)
        assert DECISION in await cap_context(cap, b)
    assert await audit(stack, decision.id) == ["promote.proposed:ok", "promote.approved:ok"]


async def cap_context(cap: Any, principal: Any) -> str:
    found = await CaptureService(cap.stack.service).session_context(
        principal, ContextRequest(session_id="s-b", project=PROJECT))
    return found.text


async def test_the_browser_shows_and_acts_on_the_review_queue(
    two_members: TwoMembers, http_server: HttpServer
) -> None:
    pytest.importorskip("websocket", reason="websocket-client (dev group) is not installed")
    from tests.browser import Chromium, chromium_or_skip

    binary = chromium_or_skip()
    a = two_members.a
    approve, reject = await two_waiting(a)

    def drive() -> dict[str, Any]:
        with Chromium(binary) as browser:
            browser.sign_in(http_server.base, two_members.b_key)
            who = browser.wait_for("!$('app').classList.contains('hidden') && "
                                   "$('who').textContent")
            listed = browser.wait_for("document.querySelectorAll('li.waiting').length === 2 && "
                                      "[...document.querySelectorAll('li.waiting')].map(li =>"
                                      " li.textContent)")
            browser.evaluate(f"document.querySelector('li.waiting[data-id=\"{approve}\"]"
                             " button.approve').click()")
            shared = browser.wait_for("$('review-note').textContent.startsWith('Shared') && "
                                      "$('review-note').textContent")
            browser.evaluate("window.prompt = () => 'not for the team';"
                             f"document.querySelector('li.waiting[data-id=\"{reject}\"]"
                             " button.reject').click()")
            browser.wait_for("$('review-note').textContent.startsWith('Not shared')")
            empty = browser.wait_for("$('queue').textContent.includes('Nothing waits') && "
                                     "$('queue').textContent")
            browser.evaluate("$('query').value = 'release train'; $('search-form').requestSubmit()")
            hit = browser.wait_for("document.querySelector('li.hit') && "
                                   "document.querySelector('li.hit').textContent")
            return {"who": who, "listed": listed, "shared": shared, "empty": empty, "hit": hit}

    seen = await asyncio.to_thread(drive)
    assert "bob" in str(seen["who"])
    assert any(NOTE in text and "promotion by default" in text for text in seen["listed"])
    assert "Nothing waits" in str(seen["empty"])
    assert "release train" in str(seen["hit"]) and "by default" in str(seen["hit"])
    assert await history(a, approve) == ["added", "promote_proposed", "promoted"]
    assert (await history(a, reject))[-1] == "promote_rejected"
