"""Code-anchored freshness (issue 18, docs/freshness.md) on the real stack: a real git
repository, the recorded Claude Code hook payloads run through the hook's own code against
the served HTTP app, and the memory's freshness as every reader sees it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from mcp import Client
from mcp.server import MCPServer

from mcp_server.capture import CaptureService, HookEvent, HookEvents
from mcp_server.file_states import FileStates, Report
from mcp_server.server import create_server
from team_memory.hook.config import HookConfig
from team_memory.hook.events import run
from team_memory_core.hook_protocol import EventKind
from team_memory_core.models.anchors import AnchorInput, FileState, Freshness
from team_memory_core.models.memories import HistoryEvent
from team_memory_core.tenants import create_key
from tests.conftest import Stack, new_tenant
from tests.mcp_server.test_capture import Capture, serving
from tests.support.anthropic_server import FakeAnthropic
from tests.support.hooks import git_hash, payload, real_git_repo, save_call, tool_call

pytestmark = pytest.mark.anyio

PROJECT = "github.com/acme/shop"
ORIGINAL = "def parse_invoice(text):\n    return to_cents(text)\n"
RULE = "parse_invoice in a.py returns the amount in integer cents, never a float."


@dataclass
class Session:
    """One Claude Code session in the repository, its hooks run as Claude Code runs them."""

    stack: Stack
    config: HookConfig
    repo: Path
    server: MCPServer
    capture: Capture
    session_id: str = "fresh-session"
    calls: int = 0

    async def hook(self, data: dict[str, Any]) -> str:
        data["session_id"] = self.session_id
        # In a thread: the hook is blocking I/O and the server runs on this event loop.
        return await asyncio.to_thread(run, data["hook_event_name"], data, self.config)

    async def tool(self, name: str, **tool_input: Any) -> None:
        self.calls += 1
        await self.hook(tool_call(name, self.repo, f"toolu_{self.calls}", **tool_input))

    async def saved(self, content: str, files: list[str]) -> UUID:
        """Claude's save_memory call: the MCP save, then its PostToolUse hook."""
        async with Client(self.server) as client:
            result = await client.call_tool("save_memory", {"content": content,
                                                             "files": files})
        assert not result.is_error, result
        self.calls += 1
        await self.hook(save_call(self.repo, f"toolu_{self.calls}", content, files))
        return UUID(result.structured_content["id"])

    async def context(self) -> str:
        out = json.loads(await self.hook(payload("session_start.json", self.repo)))
        return str(out["hookSpecificOutput"]["additionalContext"])

    async def freshness(self, memory_id: UUID) -> Freshness | None:
        memory = await self.stack.service.get(self.scoped, memory_id)
        return memory.freshness

    @property
    def scoped(self) -> Any:
        return self.stack.principal.model_copy(update={"workspace_project": PROJECT})


@asynccontextmanager
async def session(stack: Stack, fake: FakeAnthropic, tmp_path: Path, api_key: bool = False,
                  **settings: Any) -> AsyncIterator[Session]:
    repo = real_git_repo(tmp_path / "repo" / "shop", "git@github.com:acme/shop.git",
                         {"a.py": ORIGINAL, "b.py": "B = 1\n"})
    # The MCP server acts for the repository's project, as the headersHelper makes it.
    server = create_server(stack.service, default_principal=stack.principal.model_copy(
        update={"workspace_project": PROJECT}))
    async with serving(stack, fake, tmp_path, api_key=api_key, **settings) as cap:
        yield Session(stack, cap.config, repo, server, cap)


async def test_fresh_changed_fresh_gone_through_the_hooks(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    async with session(stack, fake, tmp_path) as s:
        memory_id = await s.saved(RULE, ["a.py"])
        assert await s.freshness(memory_id) == Freshness.FRESH
        [anchor] = (await stack.service.get(s.scoped, memory_id)).anchors
        assert (anchor.path, anchor.blob) == ("a.py", git_hash(s.repo, "a.py"))
        assert f'">{RULE}</team-memory>' in await s.context()

        # Claude edits a.py: the recorded PostToolUse Edit, after the file changed on disk.
        (s.repo / "a.py").write_text(ORIGINAL.replace("to_cents(text)", "Money(text)"))
        await s.tool("post_tool_use_edit.json", file_path="a.py")
        assert await s.freshness(memory_id) == Freshness.CHANGED
        [anchor] = (await stack.service.get(s.scoped, memory_id)).anchors
        assert anchor.changed_session == s.session_id and anchor.changed_at is not None
        assert f'files_changed_since_saved="a.py">{RULE}</team-memory>' in await s.context()

        # The content goes back to what the memory was saved against: fresh again.
        (s.repo / "a.py").write_text(ORIGINAL)
        await s.tool("post_tool_use_edit.json", file_path="a.py")
        assert await s.freshness(memory_id) == Freshness.FRESH
        context = await s.context()
        assert f'">{RULE}</team-memory>' in context
        assert "files_changed_since_saved" not in context

        # A Bash command deletes it: gone, and the session context leaves the memory out.
        (s.repo / "a.py").unlink()
        await s.tool("post_tool_use_bash.json", command="rm a.py")
        assert await s.freshness(memory_id) == Freshness.GONE
        assert RULE not in await s.context()

        report = await stack.service.status(s.scoped, memory_id)
    anchored = [e for e in report.history if e.event.startswith("anchor_")]
    assert [e.event for e in anchored] == [HistoryEvent.ANCHOR_CHANGED, HistoryEvent.ANCHOR_FRESH,
                                           HistoryEvent.ANCHOR_GONE]
    assert f"a.py changed since the memory was saved in session {s.session_id}" == \
        anchored[0].reason


async def test_session_start_rechecks_files_changed_outside_claude(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    """A file changed by a person (or git pull) between sessions: the next SessionStart sees
    it in the working tree and labels the memory before Claude reads it."""
    async with session(stack, fake, tmp_path) as s:
        memory_id = await s.saved(RULE, ["a.py", "b.py"])
        assert "changed since saved" not in await s.context()
        (s.repo / "b.py").write_text("B = 2\n")
        context = await s.context()
        assert f'files_changed_since_saved="b.py">{RULE}</team-memory>' in context
        assert await s.freshness(memory_id) == Freshness.CHANGED


async def test_the_server_asks_for_the_files_it_does_not_know(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    """A memory anchored from elsewhere (another machine, no hook report yet): the first
    SessionStart hashes its files on the server's request and labels it at once."""
    async with session(stack, fake, tmp_path) as s:
        # Anchored with the hash its file had when it was saved (as an import carries it).
        blob = git_hash(s.repo, "a.py")
        await stack.service.save(s.scoped, RULE, files=[AnchorInput(path="a.py", blob=blob)])
        await stack.service.save(s.scoped, "b.py holds B.", files=["b.py"])
        (s.repo / "a.py").write_text("changed = True\n")
        context = await s.context()
        assert f'files_changed_since_saved="a.py">{RULE}</team-memory>' in context
        cache = next((s.config.data_dir / "anchors").glob("*.json")).read_text()
        assert "a.py" in cache and "b.py" in cache


async def test_search_carries_freshness_and_ranks_changed_below_fresh(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    # Two memories that differ by one file name: not folded as duplicates for this test.
    async with session(stack, fake, tmp_path, duplicate_similarity=1.0) as s:
        newer = await s.saved(RULE, ["a.py"])
        older = await stack.service.save(
            s.scoped, RULE.replace("a.py", "b.py"), files=["b.py"],
            occurred_at=datetime.now(UTC) - timedelta(days=30))

        async def ranked() -> list[tuple[UUID, str | None]]:
            async with Client(s.server) as client:
                result = await client.call_tool("search_memory",
                                                {"query": "what does parse_invoice return"})
            hits = result.structured_content["results"]
            return [(UUID(h["id"]), h.get("freshness")) for h in hits[:2]]

        # Equally relevant, both fresh: the newer one first.
        assert await ranked() == [(newer, "fresh"), (older.id, "fresh")]
        (s.repo / "a.py").write_text("changed = True\n")
        await s.tool("post_tool_use_write.json", file_path="a.py")
        assert await ranked() == [(older.id, "fresh"), (newer, "changed")]
        async with Client(s.server) as client:
            got = await client.call_tool("get_memory", {"id": str(newer)})
        assert got.structured_content["freshness"] == "changed"
        assert got.structured_content["files"] == [{"path": "a.py", "freshness": "changed"}]


async def test_a_captured_observation_is_anchored_to_the_files_it_was_made_from(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path
) -> None:
    observation = {"type": "decision", "content": RULE, "importance": 3,
                   "files": ["a.py", "not/in/the/log.py"]}
    fake.script(FakeAnthropic.tool_result({"observations": [observation]}))
    async with session(stack, fake, tmp_path, api_key=True) as s:
        (s.repo / "a.py").write_text(ORIGINAL.replace("text", "raw"))
        edited = git_hash(s.repo, "a.py")
        await s.tool("post_tool_use_edit.json", file_path="a.py")
        await s.hook(payload("stop.json", s.repo))
        await s.capture.wait_row(s.session_id, "observations", 1)
        [captured] = await s.capture.captured()
        memory = await stack.service.get(s.scoped, captured.id)
        assert [(a.path, a.blob) for a in memory.anchors] == [("a.py", edited)]
        assert memory.freshness == Freshness.FRESH
        prompt = fake.requests[0]["messages"][0]["content"]
        assert '"files": ["a.py"]' in prompt and str(s.repo) not in prompt
        (s.repo / "a.py").write_text(ORIGINAL)
        await s.tool("post_tool_use_edit.json", file_path="a.py")
        assert await s.freshness(captured.id) == Freshness.CHANGED


async def test_bad_files_are_refused_and_nothing_is_written(stack: Stack) -> None:
    server = create_server(stack.service, default_principal=stack.principal)
    async with Client(server) as client:
        for files, error in ((["/home/dev/shop/a.py"], "relative to the repository root"),
                             (["../other/a.py"], "inside the repository"),
                             ([f"f{i}.py" for i in range(11)], "at most 10"),
                             (["a.py"], "tenant-wide memory")):
            project = "*" if files == ["a.py"] else None
            result = await client.call_tool("save_memory", {"content": RULE, "files": files,
                                                            "project": project})
            assert result.is_error and error in str(result.content)
        found = await client.call_tool("search_memory", {"query": "parse_invoice cents"})
    assert found.structured_content["results"] == []


async def test_reports_reach_only_the_reporters_tenant_and_project(
    stack: Stack, admin_pool: asyncpg.Pool
) -> None:
    cited = [AnchorInput(path="a.py", blob="a" * 40)]
    web = await stack.service.save(stack.principal, RULE, project="web", files=cited)
    other, _ = await new_tenant(admin_pool)
    issued = await create_key(admin_pool, stack.principal.tenant_name, name="api",
                              project="api")
    api_key = stack.principal.model_copy(update={"key_id": issued.key_id, "project": "api"})
    gone = [FileState(path="a.py", blob=None)]
    now = datetime.now(UTC)
    files = FileStates(stack.pool)
    # Another tenant, and a key bound to another project naming "web" (its reports go to its
    # own project, as every call of that key does): neither reaches the memory.
    capture = CaptureService(stack.service)
    for reporter in (other, api_key):
        await capture.accept(reporter, HookEvents(events=[HookEvent(
            key="files:1", session_id="s", kind=EventKind.FILES, project="web",
            states=[("a.py", None)], at=now)]))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the database refuses it anyway
        await files.apply(api_key, [Report("web", "s", gone, now)])
    read_only = stack.principal.model_copy(update={"read_only": True})
    assert await files.apply(read_only, [Report("web", "s", gone, now)]) == 0
    assert (await stack.service.get(stack.principal, web.id)).freshness == Freshness.FRESH
    # The tenant's own report of a newer state moves it; an older one replayed late does not.
    assert await files.apply(stack.principal, [Report("web", "s", gone, now)]) == 1
    late = [FileState(path="a.py", blob="a" * 40)]
    assert await files.apply(stack.principal,
                             [Report("web", "s", late, now - timedelta(minutes=5))]) == 0
    assert (await stack.service.get(stack.principal, web.id)).freshness == Freshness.GONE
