"""Claude Code hooks end to end: recorded hook payloads -> HTTP endpoints -> SessionObservations
workflow -> Haiku (scripted fake) -> observations ingested as memories -> next SessionStart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from mcp_server.memories import MemoryService
from team_memory import embedded
from team_memory.hook.config import HookConfig
from team_memory.hook.events import capture, run
from team_memory.hook.spool import has_spool
from team_memory_core.contract import PROJECT_KEY, capture_workflow_id
from team_memory_core.llm.client import Distiller
from team_memory_core.models.consolidation import ManifestoRule
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.rules.text import approx_tokens
from team_memory_core.store.consolidation import upsert_manifesto
from team_memory_core.store.memories import MemoryRow, recent_important
from team_memory_core.store.pool import tenant_tx
from team_memory_core.tenants import IssuedKey, create_key
from tests.conftest import Stack
from tests.support.anthropic_server import FakeAnthropic
from tests.support.hooks import ROOT, payload
from tests.support.http import serving_service
from tests.support.stored import capture_session
from workflows.worker import running_worker

pytestmark = pytest.mark.anyio

PROJECT = "github.com/acme/shop"
DECISION = ("orders.id uses UUID v7 primary keys: time-sortable, and ids no longer reveal "
            "how many orders exist.")
BUGFIX = "test_sort_by_id compared integer order ids; since UUID v7 it compares created_at."
OBSERVATIONS = {"observations": [
    {"type": "decision", "content": DECISION, "importance": 4},
    {"type": "bugfix", "content": BUGFIX, "importance": 2},
]}
SESSION = json.loads((ROOT / "tests/fixtures/claude_code/session.json").read_text())["order"]


@dataclass
class Capture:
    stack: Stack
    fake: FakeAnthropic
    config: HookConfig
    repo: Path

    def payload(self, name: str, session_id: str | None = None) -> dict[str, Any]:
        data = payload(name, self.repo)
        if session_id:
            data["session_id"] = session_id
        return data

    async def hook(self, name: str, session_id: str | None = None,
                   config: HookConfig | None = None) -> str:
        data = self.payload(name, session_id)
        # In a thread: the hook is blocking I/O and the server runs on this event loop.
        return await asyncio.to_thread(run, data["hook_event_name"], data, config or self.config)

    async def session_row(self, session_id: str) -> asyncpg.Record | None:
        async with tenant_tx(self.stack.pool, self.stack.principal.tenant_id) as conn:
            assert self.stack.principal.key_id is not None
            return await capture_session(conn, self.stack.principal.key_id, session_id)

    async def wait_row(self, session_id: str, field: str, value: int,
                       timeout: float = 30) -> asyncpg.Record:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            row = await self.session_row(session_id)
            if row is not None and row[field] >= value:
                return row
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{session_id}: {field} never reached {value}: {row}")
            await asyncio.sleep(0.1)

    async def replay_recorded_session(self) -> tuple[str, list[MemoryRow]]:
        """The recorded session, distilled into OBSERVATIONS, each committed as a memory:
        (its session id, the captured memories)."""
        add = FakeAnthropic.tool_result({"action": "ADD", "reason": "a separate fact"})
        self.fake.script(FakeAnthropic.tool_result(OBSERVATIONS), add, add)
        for name in SESSION:
            await self.hook(name)
        session_id = self.payload(SESSION[0])["session_id"]
        await self.wait_row(session_id, "observations", 2)
        captured = await self.captured()
        for record in captured:
            await self.stack.wait_status(record.id)
        return session_id, captured

    async def captured(self) -> list[MemoryRow]:
        async with tenant_tx(self.stack.pool, self.stack.principal.tenant_id) as conn:
            rows = await recent_important(conn, [PROJECT], datetime(1970, 1, 1, tzinfo=UTC),
                                          1, 50)
        return [r for r in rows if "captured" in r.tags]


def git_repo(root: Path) -> Path:
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text(
        '[remote "origin"]\n\turl = git@github.com:acme/shop.git\n')
    return root


@asynccontextmanager
async def serving(stack: Stack, fake: FakeAnthropic, tmp_path: Path, *, api_key: bool = True,
                  **overrides: Any) -> AsyncIterator[Capture]:
    port = embedded.free_port()
    settings = stack.settings.model_copy(update={
        "mcp_port": port, "anthropic_api_key": SecretStr("sk-test") if api_key else None,
        "anthropic_base_url": fake.base_url, **overrides})
    service = MemoryService(settings=settings, pool=stack.pool, temporal=stack.client,
                            embedder=stack.embedder)
    distiller = Distiller(api_key="sk-test", model=settings.llm_model, base_url=fake.base_url,
                          timeout_s=5) if api_key else None
    worker = running_worker(stack.client, settings, stack.pool, stack.embedder, distiller)
    try:
        async with worker, serving_service(service) as base:
            config = HookConfig(base, tmp_path / "data", stack.api_key)
            yield Capture(stack, fake, config, git_repo(tmp_path / "shop"))
    finally:
        if distiller is not None:
            await distiller.aclose()


async def test_recorded_session_becomes_typed_memories_and_next_context(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    add = FakeAnthropic.tool_result({"action": "ADD", "reason": "a separate fact"})
    # The distillation, then the dedupe decisions of the ingestion (when a neighbour exists).
    fake.script(FakeAnthropic.tool_result(OBSERVATIONS, input_tokens=900, output_tokens=80),
                add, add)
    async with serving(stack, fake, tmp_path) as cap:
        first = json.loads(await cap.hook(SESSION[0]))["hookSpecificOutput"]
        assert "No memories for this project yet" in first["additionalContext"]
        assert "Capture: on" in first["additionalContext"]
        for name in SESSION[1:]:
            await cap.hook(name)
        session_id = cap.payload(SESSION[0])["session_id"]
        row = await cap.wait_row(session_id, "observations", 2)
        assert (row["events_distilled"], row["input_tokens"], row["output_tokens"]) == \
            (5, 900, 80)  # prompt, edit, write, bash, stop (Read is routine: not sent)
        memories = {r.content: r for r in await cap.captured()}
        assert set(memories) == {DECISION, BUGFIX}
        assert memories[DECISION].category == "architecture"
        assert "observation:decision" in memories[DECISION].tags
        assert memories[BUGFIX].category == "bugfix"
        for record in memories.values():
            assert await stack.wait_status(record.id) is MemoryStatus.ACTIVE
            # Provenance: the session's member, by capture, in that session, shared.
            assert (record.author, record.origin, record.origin_session, record.scope) == (
                stack.principal.member_name, "capture", session_id, "project")

        prompt = fake.requests[0]["messages"][0]["content"]
        assert "default=uuid7" in prompt and "1 failed, 4 passed" in prompt
        for secret in ("MUST-NOT-LEAVE", "sk-ant-api03", "hunter2"):
            assert secret not in prompt
        assert "[REDACTED:" in prompt

        nxt = json.loads(await cap.hook("session_start.json", "next-session"))
        context = nxt["hookSpecificOutput"]["additionalContext"]
        assert approx_tokens(context) <= stack.settings.session_context_tokens
        assert DECISION in context and f"# Team Memory for {PROJECT}" in context
        assert context.index(DECISION) < context.index(BUGFIX)  # more important first
        async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
            daily = await conn.fetchrow("SELECT calls, input_tokens FROM capture_usage_daily")
        assert (daily["calls"], daily["input_tokens"]) == (1, 900)


async def test_context_stays_within_a_small_budget(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    for i in range(40):
        await stack.service.save(stack.principal, f"Convention {i}: service {i} logs in JSON "
                                 "with a request id on every line " + "x" * 200,
                                 category="preference", importance=1, project=PROJECT)
    await stack.service.save(stack.principal, DECISION, category="architecture",
                             importance=5, project=PROJECT)
    async with serving(stack, fake, tmp_path, session_context_tokens=200) as cap:
        out = json.loads(await cap.hook("session_start.json"))
    context = out["hookSpecificOutput"]["additionalContext"]
    assert approx_tokens(context) <= 200
    assert DECISION in context
    assert "Convention 39" not in context or "Convention 0" not in context


async def test_context_is_the_manifesto_then_the_working_set_rule(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    for i in range(12):
        await stack.service.save(stack.principal, f"Note {i}: the {i}th service logs in JSON",
                                 importance=1 + i % 5, project=PROJECT)
    rules = [ManifestoRule(text="Every table has a UUID v7 primary key.", source_ids=[]),
             ManifestoRule(text="Deploys happen on Tuesdays and Thursdays only.", source_ids=[])]
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        await upsert_manifesto(conn, tenant_id=stack.principal.tenant_id, project=PROJECT,
                               rules=rules, fingerprint="f", policy="local", model=None,
                               input_tokens=None, output_tokens=None)
    async with serving(stack, fake, tmp_path, session_context_tokens=300) as cap:
        out = json.loads(await cap.hook("session_start.json"))
    context = out["hookSpecificOutput"]["additionalContext"]
    assert approx_tokens(context) <= 300
    assert context.index("1. Every table has a UUID v7") < context.index("## Working set")
    assert "2. Deploys happen on Tuesdays and Thursdays only." in context
    shown = [line for line in context.splitlines()
             if line.startswith("<team-memory ") and 'category="general"' in line]
    assert 0 < len(shown) < 12  # the budget cut the working set
    ranked = await stack.service.working_set(
        stack.principal.model_copy(update={"workspace_project": PROJECT}), budget_tokens=10_000)
    expected = [m.content for m in ranked.memories][:len(shown)]
    assert [line.split(">", 1)[1].removesuffix("</team-memory>") for line in shown] == expected


async def test_duplicate_and_late_events_are_distilled_once(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.script(FakeAnthropic.tool_result({"observations": []}))
    async with serving(stack, fake, tmp_path) as cap:
        for name in ("post_tool_use_edit.json", "post_tool_use_edit.json",
                     "post_tool_use_edit.json", "stop.json"):
            await cap.hook(name, "dup-session")
        row = await cap.wait_row("dup-session", "events_distilled", 2)
        await cap.hook("session_end.json", "dup-session")
        # The same tool call replayed after the session workflow ended: a new run, no new call.
        await cap.hook("post_tool_use_edit.json", "dup-session")
        await cap.hook("session_end.json", "dup-session")
        await asyncio.sleep(1.5)
        row = await cap.session_row("dup-session")
    assert fake.calls == 1
    assert fake.requests[0]["messages"][0]["content"].count("default=uuid7") == 1
    assert row is not None and row["events_distilled"] == 2


async def test_rate_limited_distillation_is_retried_after_the_hint(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    """A 429 with Retry-After: the next attempt waits the hint, not the policy's 1 s backoff."""
    fake.script(FakeAnthropic.error(429, "rate_limit_error", "slow down",
                                    headers={"retry-after": "3"}),
                FakeAnthropic.tool_result({"observations": []}))
    async with serving(stack, fake, tmp_path) as cap:
        for name in ("post_tool_use_edit.json", "stop.json"):
            await cap.hook(name, "limited-session")
        row = await cap.wait_row("limited-session", "events_distilled", 2)
    refused, retried = (c.at for c in fake.conversations)
    assert retried - refused >= 3.0
    assert (row["events_distilled"], row["events_skipped"]) == (2, 0)


@pytest.mark.parametrize(("limits", "reason"), [
    ({"capture_session_tokens": 500}, "session token budget"),
    ({"capture_daily_tokens": 1000}, "daily token budget"),
])
async def test_token_budgets_are_enforced(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path, limits: dict[str, int], reason: str
) -> None:
    async with serving(stack, fake, tmp_path, **limits) as cap:
        for name in ("post_tool_use_bash.json", "stop.json"):
            await cap.hook(name, "budget-session")
        row = await cap.wait_row("budget-session", "events_skipped", 2)
    assert fake.calls == 0
    assert reason in row["last_skip_reason"]
    assert row["events_distilled"] == 0 and row["input_tokens"] == 0


async def test_server_down_then_back_delivers_the_spool(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.script(*[FakeAnthropic.tool_result({"observations": []})] * 3)
    # A short idle period: events replayed after SessionEnd reopen the session and are
    # distilled when it goes idle again.
    async with serving(stack, fake, tmp_path, capture_idle_minutes=0.05) as cap:
        gone = HookConfig(f"http://127.0.0.1:{embedded.free_port()}", cap.config.data_dir,
                          cap.config.api_key)
        for name in ("post_tool_use_edit.json", "post_tool_use_bash.json"):
            data = cap.payload(name, "spool-session")
            assert (await asyncio.to_thread(capture, gone, "PostToolUse", data))[0] == "spooled"
        assert len(gone.spool.read_text().splitlines()) == 2
        # The server is back: the next hooks (the real entry point) send their events and
        # replay the spool in a detached process.
        for name in ("stop.json", "session_end.json"):
            event = cap.payload(name)["hook_event_name"]
            # In a thread: the server under test runs on this event loop.
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "team_memory.hook", event, "--server",
                 cap.config.server, "--data-dir", str(cap.config.data_dir)],
                input=json.dumps(cap.payload(name, "spool-session")), text=True,
                capture_output=True, cwd=ROOT, timeout=30, check=False,
                env={"PATH": "/usr/bin:/bin", "TEAM_MEMORY_API_KEY": stack.api_key})
            assert done.returncode == 0, done.stderr
        for _ in range(400):
            if not has_spool(cap.config):
                break
            await asyncio.sleep(0.05)
        assert not has_spool(cap.config)
        row = await cap.wait_row("spool-session", "events_distilled", 3)
    assert row["events_distilled"] == 3
    prompts = " ".join(r["messages"][0]["content"] for r in fake.requests)
    assert "default=uuid7" in prompts and "pytest tests/test_orders.py" in prompts


async def test_without_api_key_events_are_only_counted(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    async with serving(stack, fake, tmp_path, api_key=False) as cap:
        out = json.loads(await cap.hook("session_start.json", "keyless"))
        await cap.hook("post_tool_use_bash.json", "keyless")
        await cap.hook("stop.json", "keyless")
        row = await cap.session_row("keyless")
    assert "Capture: off" in out["hookSpecificOutput"]["additionalContext"]
    assert "only explicit memories" in out["hookSpecificOutput"]["additionalContext"]
    assert row is not None and (row["events_received"], row["events_skipped"]) == (2, 2)
    assert fake.calls == 0


def _self_capturing(cap: Capture) -> HookConfig:
    return HookConfig(cap.config.server, cap.config.data_dir, cap.config.api_key,
                      self_capture=True)


async def test_self_capture_asks_claude_once_per_turn_that_changed_something(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    async with serving(stack, fake, tmp_path, api_key=False) as cap:
        config = _self_capturing(cap)
        start = json.loads(await cap.hook("session_start.json", "mine", config))
        assert "Capture: by you" in start["hookSpecificOutput"]["additionalContext"]
        assert await cap.hook("stop.json", "mine", config) == ""  # nothing changed yet
        await cap.hook("post_tool_use_read.json", "mine", config)  # a read changes nothing
        assert await cap.hook("stop.json", "mine", config) == ""
        await cap.hook("post_tool_use_edit.json", "mine", config)
        await cap.hook("post_tool_use_bash.json", "mine", config)
        asked = json.loads(await cap.hook("stop.json", "mine", config))
        assert asked["decision"] == "block" and "save_memory" in asked["reason"]
        # Claude continues because of the hook: its next stop is never blocked again ...
        again = {**cap.payload("stop.json", "mine"), "stop_hook_active": True}
        assert await asyncio.to_thread(run, "Stop", again, config) == ""
        # ... and a later stop asks only if something changed since.
        assert await cap.hook("stop.json", "mine", config) == ""
        await cap.hook("post_tool_use_write.json", "mine", config)
        assert json.loads(await cap.hook("stop.json", "mine", config))["decision"] == "block"
        await cap.hook("session_end.json", "mine", config)
    assert not list((cap.config.data_dir / "self-capture").glob("*.json"))
    assert fake.calls == 0


async def test_self_capture_stays_quiet_when_the_server_distills_or_is_down(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    fake.script(FakeAnthropic.tool_result({"observations": []}))
    async with serving(stack, fake, tmp_path) as cap:  # the server has its own key
        config = _self_capturing(cap)
        await cap.hook("post_tool_use_edit.json", "keyed", config)
        assert await cap.hook("stop.json", "keyed", config) == ""
    down = HookConfig(f"http://127.0.0.1:{embedded.free_port()}", tmp_path / "down", "tm_x",
                      self_capture=True)
    await cap.hook("post_tool_use_edit.json", "offline", down)
    assert await cap.hook("stop.json", "offline", down) == ""  # its saves could not land


async def test_wrong_key_is_refused_and_kept_for_later(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    async with serving(stack, fake, tmp_path) as cap:
        wrong = HookConfig(cap.config.server, cap.config.data_dir, "tm_not-a-key")
        data = cap.payload("post_tool_use_bash.json")
        assert (await asyncio.to_thread(capture, wrong, "PostToolUse", data))[0] == "spooled"
        assert await cap.session_row(data["session_id"]) is None


async def _send_as(cap: Capture, secret: str, session_id: str, project: str) -> None:
    event = {"key": "tool:toolu_same", "session_id": session_id, "kind": "tool",
             "project": project, "tool": "Bash", "summary": "ran the migrations",
             "at": datetime.now(UTC).isoformat()}
    async with httpx.AsyncClient(base_url=cap.config.server) as http:
        sent = await http.post("/hooks/events", json={"events": [event]},
                               headers={"Authorization": f"Bearer {secret}"})
    assert sent.status_code == 202, sent.text


async def _web_key(stack: Stack, admin_pool: asyncpg.Pool) -> IssuedKey:
    return await create_key(admin_pool, stack.principal.tenant_name, name="web", project="web")


async def test_two_keys_sending_one_session_id_get_two_sessions(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path, admin_pool: asyncpg.Pool
) -> None:
    web = await _web_key(stack, admin_pool)
    async with serving(stack, fake, tmp_path) as cap:
        await _send_as(cap, stack.api_key, "unknown", PROJECT)
        await _send_as(cap, web.secret, "unknown", PROJECT)
    projects = {}
    for key_id in (stack.principal.key_id, web.key_id):
        workflow_id = capture_workflow_id(stack.principal.tenant_name, key_id, "unknown")
        described = await stack.client.get_workflow_handle(workflow_id).describe()
        projects[key_id] = described.typed_search_attributes.get(PROJECT_KEY)
    assert projects == {stack.principal.key_id: PROJECT, web.key_id: "web"}


async def test_two_keys_sending_one_session_id_are_counted_apart(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path, admin_pool: asyncpg.Pool
) -> None:
    web = await _web_key(stack, admin_pool)
    async with serving(stack, fake, tmp_path, api_key=False) as cap:
        await _send_as(cap, stack.api_key, "shared", PROJECT)
        await _send_as(cap, web.secret, "shared", PROJECT)
        await _send_as(cap, web.secret, "shared", PROJECT)
        mine = await cap.session_row("shared")
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        theirs = await capture_session(conn, web.key_id, "shared")
    assert mine is not None and theirs is not None
    assert (mine["project"], mine["events_received"]) == (PROJECT, 1)
    assert (theirs["project"], theirs["events_received"]) == ("web", 2)
