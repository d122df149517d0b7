"""The core promise through the real Claude Code CLI: what Claude saves in a repository, the
next session in that repository knows, and another repository does not.

One `team-memory up` for the module (its Haiku is a scripted fake, so capture is on); Claude
Code is the pinned npm package (tests/e2e/claude_code), run with `claude -p` in a temporary
HOME against a second scripted fake that plays the model. Two repositories: A (origin
github.com/acme/payments) and B (origin github.com/acme/web), under both install scopes:
user (~/.claude.json, tenant `local`) and project (.mcp.json in each repository, a second
tenant whose key comes from $TEAM_MEMORY_API_KEY).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from bench.stack import BenchStack, start_stack
from team_memory.embedded import free_port
from team_memory.hook.self_capture import ASK
from team_memory_core.store.pool import create_pool
from team_memory_core.tenants import create_key, ensure_tenant
from tests.mcp_server.test_http import client_for
from tests.mcp_server.test_tools import call
from tests.support.anthropic_server import Conversation, FakeAnthropic, Reply
from tests.support.claude_code import (
    PROJECT_HEADER,
    ClaudeCli,
    ClaudeCode,
    RefusingProxy,
    Session,
    ToolCall,
    git_repository,
    install_claude_code,
    install_cli,
    is_session,
    mcp_entry,
    script_session,
    session_context,
    session_conversation,
)
from tests.support.llm import BENIGN_SCREENING

PAYMENTS, WEB = "github.com/acme/payments", "github.com/acme/web"
TOOL = "mcp__team-memory__{}".format
SAVE, SEARCH = TOOL("save_memory"), TOOL("search_memory")
READ_RESOURCE = "ReadMcpResourceTool"
MEMORY_TOOLS = [TOOL(name) for name in ("save_memory", "search_memory", "get_memory",
                                        "get_memories", "memory_status")] + [READ_RESOURCE]
WAIT_S = 60
# The first run installs the CLI (npm ci, ~250 MB on a cold cache) in the first test's setup.
pytestmark = pytest.mark.timeout(900)
_TOKEN = re.compile(r"\b(manifesto|capture)-[0-9a-f]{8}\b")


# --- the server's model: Haiku, scripted by the tool each call forces ----------------------------


def _manifesto(conversation: Conversation) -> Reply:
    """A rule for each memory that carries a manifesto-<hex> token, citing that memory."""
    rules = []
    for line in conversation.last_user_text.splitlines():
        memory = json.loads(line) if line.startswith("{") else {}
        token = _TOKEN.search(str(memory.get("content", "")))
        if token and token.group(1) == "manifesto":
            rules.append({"text": f"Follow {token.group(0)}-rule in every change.",
                          "source_ids": [memory["id"]]})
    return FakeAnthropic.tool_result({"rules": rules})


def _observations(conversation: Conversation) -> Reply:
    """An observation for each capture-<hex> token in the session's events."""
    tokens = sorted({m.group(0) for m in _TOKEN.finditer(conversation.last_user_text)
                     if m.group(1) == "capture"})
    return FakeAnthropic.tool_result({"observations": [
        {"type": "decision", "importance": 4,
         "content": f"Payments amounts are integer cents, never floats ({t}-observed)."}
        for t in tokens]})


def _forced(name: str) -> Callable[[Conversation], bool]:
    return lambda conversation: conversation.forced_tool == name


def script_server_model(haiku: FakeAnthropic) -> None:
    haiku.when(_forced("record_ingest_decision"),
               FakeAnthropic.tool_result({"reason": "new", "action": "ADD"}))
    haiku.when(_forced("record_screening"), FakeAnthropic.tool_result(BENIGN_SCREENING))
    haiku.when(_forced("record_consolidation_plan"), FakeAnthropic.tool_result({"actions": []}))
    haiku.when(_forced("record_manifesto"), _manifesto)
    haiku.when(_forced("record_observations"), _observations)


# --- module fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli() -> ClaudeCli:
    return install_cli()


@pytest.fixture(scope="module")
def haiku() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        script_server_model(fake)
        yield fake


@pytest.fixture(scope="module")
def stack(cli: ClaudeCli, haiku: FakeAnthropic) -> Iterator[BenchStack]:
    # Outside pytest's temp root: a concurrent pytest run chmods it back to 0700 while
    # PostgreSQL (pgserver's own system user when run as root) must traverse it.
    root = Path(tempfile.mkdtemp(prefix="team-memory-e2e-"))
    try:
        running = start_stack(root, ANTHROPIC_API_KEY="sk-ant-server-dummy",
                              ANTHROPIC_BASE_URL=haiku.base_url)
        try:
            yield running
        finally:
            running.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy() -> Iterator[RefusingProxy]:
    with RefusingProxy() as refusing:
        yield refusing


@pytest.fixture(scope="module")
def model() -> Iterator[FakeAnthropic]:
    """Claude Code's model; each test scripts its sessions by a marker in the prompt."""
    with FakeAnthropic() as fake:
        fake.fallback = FakeAnthropic.text("ok")
        yield fake


@dataclass(frozen=True)
class Setup:
    """One install scope: repositories A and B, and Claude Code as their user runs it."""

    scope: str
    claude: ClaudeCode
    repo_a: Path
    repo_b: Path
    api_key: str
    tenant: str


def _new_tenant_key(stack: BenchStack, tenant: str) -> str:
    async def create() -> str:
        pool = await create_pool(stack.postgres_url(), min_size=1, max_size=2)
        try:
            await ensure_tenant(pool, tenant)
            return (await create_key(pool, tenant, name="e2e")).secret
        finally:
            await pool.close()

    return asyncio.run(create())


@pytest.fixture(scope="module", params=["user", "project"])
def setup(request: pytest.FixtureRequest, stack: BenchStack, cli: ClaudeCli,
          model: FakeAnthropic, proxy: RefusingProxy,
          tmp_path_factory: pytest.TempPathFactory) -> Setup:
    scope = str(request.param)
    root = tmp_path_factory.mktemp(f"e2e-{scope}")
    home = root / "home"
    home.mkdir()
    repo_a = git_repository(root / "payments", "git@github.com:acme/payments.git")
    repo_b = git_repository(root / "web", "https://github.com/acme/web.git")
    env: dict[str, str] = {}
    if scope == "user":
        install_claude_code(home, stack.data_dir, stack.mcp_port)
        key, tenant = stack.api_key, "local"
    else:  # a team that commits .mcp.json: the key comes from each member's environment
        tenant = f"acme-{uuid.uuid4().hex[:6]}"
        key = _new_tenant_key(stack, tenant)
        env["TEAM_MEMORY_API_KEY"] = key
        for repo in (repo_a, repo_b):
            install_claude_code(home, stack.data_dir, stack.mcp_port, scope="project",
                                project_dir=repo)
    claude = ClaudeCode(cli, home, model, proxy, env=env, logs=root)
    return Setup(scope, claude, repo_a, repo_b, key, tenant)


# --- helpers ------------------------------------------------------------------------------------


def search_api(stack: BenchStack, key: str, project: str, query: str) -> list[dict[str, Any]]:
    """What the server holds for ``project`` (the memory browser's API, as a person sees it)."""
    response = httpx.get(f"http://127.0.0.1:{stack.mcp_port}/api/search",
                         params={"q": query, "project": project, "limit": "20"},
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)
    response.raise_for_status()
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def wait_for(stack: BenchStack, key: str, text: str,
             *projects: str) -> dict[str, list[dict[str, Any]]]:
    """The hits that mention ``text``, per project of ``projects`` where there are some (polls
    until there is one in any of them, or timeout)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = {p: hits for p in projects
                 if (hits := [h for h in search_api(stack, key, p, text)
                              if text in json.dumps(h)])}
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def seed(stack: BenchStack, key: str, project: str, content: str) -> None:
    """A memory saved explicitly into ``project`` (as another client would), once active."""
    async def save() -> None:
        async with client_for(stack.mcp_url, key) as client:
            saved = await call(client, "save_memory", content=content, project=project,
                               category="architecture", importance=4)
            with anyio.fail_after(WAIT_S):
                while (await call(client, "memory_status", id=saved["id"]))["status"] \
                        != "active":
                    await anyio.sleep(0.1)

    anyio.run(save)


def manifesto_of(stack: BenchStack, key: str, project: str) -> str:
    """The project's manifesto, asked for by name (as any MCP client can)."""
    async def fetch() -> str:
        async with client_for(stack.mcp_url, key) as client:
            prompt = await client.get_prompt("manifesto", {"project": project})
        return "\n".join(str(getattr(m.content, "text", "")) for m in prompt.messages)

    return anyio.run(fetch)


def run(setup: Setup, cwd: Path, calls: list[ToolCall], purpose: str) -> tuple[Session,
                                                                               Conversation]:
    """One scripted session in ``cwd``; checks what every session must do, then returns it
    with the last request the model received."""
    marker = f"session-{uuid.uuid4().hex}"
    script_session(setup.claude.model, marker, calls)
    session = setup.claude.run(f"[{marker}] {purpose}", cwd,
                               allowed_tools=[*MEMORY_TOOLS, "Bash", "Read", "Edit"])
    assert session.returncode == 0, session.describe()
    assert session.result.get("is_error") is False, session.describe()
    failing = [h for h in session.hook_responses() if h.get("exit_code") != 0]
    assert not failing, failing
    assert setup.claude.proxy.attempts == [], "Claude Code tried to reach the internet"
    assert setup.claude.model.errors == []
    conversation = session_conversation(setup.claude.model, marker)
    errors = [o for o in conversation.outcomes if o.is_error]
    assert not errors, errors
    assert len(conversation.outcomes) == len(calls), conversation.outcomes
    return session, conversation


def run_prompt(setup: Setup, cwd: Path, prompt: str) -> str:
    """Run one of the server's MCP prompts as Claude Code's slash command
    (``/mcp__team-memory__<name>``); returns the text it put before the model."""
    command = f"/mcp__team-memory__{prompt}"
    before = len(setup.claude.model.conversations)
    session = setup.claude.run(command, cwd, allowed_tools=MEMORY_TOOLS)
    assert session.returncode == 0, session.describe()
    mine = [c for c in setup.claude.model.conversations[before:]
            if f"<command-name>{command}</command-name>" in c.text_of("user")]
    assert mine, f"the model never received {command}"
    return mine[-1].text_of("user")


def tag() -> str:
    return uuid.uuid4().hex[:8]


# --- one project identity, end to end -----------------------------------------------------------


def test_install_writes_a_headers_helper_that_names_the_repository(setup: Setup) -> None:
    """Claude Code runs the entry's headersHelper (shell, cwd = its own, 10 s) once per
    session and sends the JSON object it prints as headers on every MCP request."""
    subdirectory = setup.repo_a / "src" / "billing"
    subdirectory.mkdir(parents=True, exist_ok=True)
    for cwd, repo, project in ((setup.repo_a, setup.repo_a, PAYMENTS),
                               (subdirectory, setup.repo_a, PAYMENTS),
                               (setup.repo_b, setup.repo_b, WEB)):
        entry = mcp_entry(setup.claude.home, setup.scope, repo)
        helper = entry.get("headersHelper")
        assert isinstance(helper, str) and helper, f"no headersHelper in {entry}"
        env = {**setup.claude.environment(), "CLAUDE_CODE_MCP_SERVER_NAME": "team-memory",
               "CLAUDE_CODE_MCP_SERVER_URL": str(entry["url"])}
        done = subprocess.run(helper, shell=True, cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        headers = json.loads(done.stdout)
        assert isinstance(headers, dict)
        assert all(isinstance(v, str) for v in headers.values()), headers
        assert headers.get(PROJECT_HEADER) == project, (cwd, headers)


def test_a_decision_saved_without_a_project_lands_in_the_repository(
        setup: Setup, stack: BenchStack) -> None:
    decision = f"Decision {tag()}: payments primary keys are UUID v7, sortable by time"
    run(setup, setup.repo_a, [ToolCall(SAVE, {"content": decision, "category": "architecture",
                                              "importance": 4})],
        "Remember that we use UUID v7 for primary keys.")
    found = wait_for(stack, setup.api_key, decision, PAYMENTS, "default")
    assert list(found) == [PAYMENTS], found


def test_the_next_session_in_the_repository_knows_it(setup: Setup, stack: BenchStack) -> None:
    word = tag()
    decision = f"Decision {word}: payments primary keys are UUID v7, sortable by time"
    seed(stack, setup.api_key, PAYMENTS, decision)
    session, conversation = run(setup, setup.repo_a, [
        ToolCall(SEARCH, {"query": "Which type do we use for primary keys?"}),
        ToolCall(READ_RESOURCE, {"server": "team-memory", "uri": "memory://working_set"}),
    ], "What do we use for primary keys?")

    context = session_context(session, conversation)
    assert PAYMENTS in context and word in context, context
    search, working_set = conversation.outcomes
    assert word in search.text, search.text
    assert word in working_set.text, working_set.text


def test_another_repository_sees_neither_unless_it_names_the_project(
        setup: Setup, stack: BenchStack) -> None:
    word = tag()
    seed(stack, setup.api_key, PAYMENTS,
         f"Decision {word}: refunds go through the ledger service, never straight to Stripe")
    session, conversation = run(setup, setup.repo_b, [
        ToolCall(SEARCH, {"query": "How do refunds reach Stripe?"}),
        ToolCall(SEARCH, {"query": "How do refunds reach Stripe?", "project": PAYMENTS}),
    ], "How do refunds work?")

    context = session_context(session, conversation)
    assert WEB in context and word not in context, context
    own, named = conversation.outcomes
    assert word not in own.text, own.text
    assert word in named.text, named.text  # an explicit project still wins


def test_a_prompt_that_names_no_project_is_the_repository_s(setup: Setup) -> None:
    text = run_prompt(setup, setup.repo_b, "manifesto")
    assert WEB in text and "project default" not in text, text


# --- the session context carries the manifesto ------------------------------------------------


def test_after_consolidation_the_context_carries_the_manifesto(stack: BenchStack,
                                                               setup: Setup) -> None:
    token = f"manifesto-{tag()}"
    seed(stack, setup.api_key, PAYMENTS,
         f"Every money amount in payments is an integer of cents ({token})")
    done = subprocess.run(
        [sys.executable, "-m", "team_memory", "consolidate", "--project", PAYMENTS,
         "--tenant", setup.tenant, "--wait"],
        env={**stack.child_env(), "TEMPORAL_ADDRESS": stack.temporal_address},
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{token}-rule" in manifesto_of(stack, setup.api_key, PAYMENTS)

    session, conversation = run(setup, setup.repo_a, [], "Start.")
    context = session_context(session, conversation)
    assert f"{token}-rule" in context, context
    assert f"{token}-rule" in run_prompt(setup, setup.repo_a, "manifesto")


# --- capture: tool use becomes an observation the next session sees -----------------------------


def test_captured_tool_use_reaches_the_next_session(stack: BenchStack, setup: Setup) -> None:
    token = f"capture-{tag()}"
    app = setup.repo_a / "app.py"
    run(setup, setup.repo_a, [
        ToolCall("Read", {"file_path": str(app)}),
        ToolCall("Edit", {"file_path": str(app), "old_string": "ID_KIND = 'uuid4'",
                          "new_string": f"ID_KIND = 'uuid7'  # {token}"}),
        ToolCall("Bash", {"command": f"echo 'amounts in integer cents ({token})' >> NOTES.md",
                          "description": "record the money rule"}),
    ], "Switch the ids to UUID v7 and note the money rule.")
    assert token in app.read_text()
    observed = f"{token}-observed"
    assert wait_for(stack, setup.api_key, observed, PAYMENTS), "no observation was captured"

    session, conversation = run(setup, setup.repo_a, [
        ToolCall(SEARCH, {"query": "How are money amounts stored?"})], "Money amounts?")
    assert observed in session_context(session, conversation)
    (search,) = conversation.outcomes
    assert observed in search.text, search.text


# --- freshness: a memory that cites a file learns when it changes (docs/freshness.md) -----------


def memory_api(stack: BenchStack, key: str, memory_id: str) -> dict[str, Any]:
    response = httpx.get(f"http://127.0.0.1:{stack.mcp_port}/api/memories/{memory_id}",
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)
    response.raise_for_status()
    memory: dict[str, Any] = response.json()["memory"]
    return memory


def test_a_memory_citing_a_file_is_labelled_once_the_file_changes(
        setup: Setup, stack: BenchStack) -> None:
    word = tag()
    path = f"billing_{word}.py"
    source = setup.repo_a / path
    original = f"def to_cents(amount):\n    return round(amount * 100)  # {word}\n"
    rule = f"Rule {word}: {path} converts amounts to integer cents with to_cents."
    source.write_text(original)
    run(setup, setup.repo_a, [
        ToolCall(SAVE, {"content": rule, "category": "business_rule", "files": [path]}),
    ], "Remember how amounts are converted.")
    [hit] = wait_for(stack, setup.api_key, rule, PAYMENTS)[PAYMENTS]
    anchored = memory_api(stack, setup.api_key, hit["id"])
    blob = hashlib.sha1(b"blob %d\0" % len(original.encode()) + original.encode()).hexdigest()
    assert [(a["path"], a["blob"], a["freshness"]) for a in anchored["anchors"]] == \
        [(path, blob, "fresh")], anchored  # the save_memory hook reported its baseline
    assert word not in json.dumps(anchored["anchors"]).replace(path, "")  # never the content

    run(setup, setup.repo_a, [
        ToolCall("Read", {"file_path": str(source)}),
        ToolCall("Edit", {"file_path": str(source), "old_string": "round(amount * 100)",
                          "new_string": "Money(amount).cents"}),
    ], "Use Money for the conversion.")
    assert memory_api(stack, setup.api_key, hit["id"])["freshness"] == "changed"

    session, conversation = run(setup, setup.repo_a, [
        ToolCall(SEARCH, {"query": f"How does {path} convert amounts?"})], "Amounts?")
    assert f'files_changed_since_saved="{path}">{rule}</team-memory>' in session_context(session,
                                                                             conversation)
    (search,) = conversation.outcomes
    assert '"freshness":"changed"' in search.text.replace(" ", ""), search.text


# --- the server down: the session completes, the spool is replayed -------------------------------


def _spooled(data_dir: Path, session_id: str) -> list[dict[str, Any]]:
    lines = []
    for path in data_dir.glob("hook-spool.jsonl*"):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in lines if r.get("session_id") == session_id]


def _capture_session(stack: BenchStack, session_id: str) -> dict[str, Any] | None:
    async def fetch() -> dict[str, Any] | None:
        pool = await create_pool(stack.postgres_url(), min_size=1, max_size=1)
        try:
            row = await pool.fetchrow("SELECT * FROM capture_sessions WHERE session_id = $1",
                                      session_id)
        finally:
            await pool.close()
        return None if row is None else dict(row)

    return asyncio.run(fetch())


def test_with_the_server_down_the_session_completes_and_the_spool_is_replayed(
        stack: BenchStack, setup: Setup, tmp_path: Path) -> None:
    down_home = tmp_path / "home"
    down_home.mkdir()
    # The same install pointed at a port where nothing listens.
    if setup.scope == "user":
        where = setup.repo_a
        install_claude_code(down_home, stack.data_dir, free_port())
    else:
        where = git_repository(tmp_path / "payments", "git@github.com:acme/payments.git")
        install_claude_code(down_home, stack.data_dir, free_port(), scope="project",
                            project_dir=where)
    down = ClaudeCode(setup.claude.cli, down_home, setup.claude.model, setup.claude.proxy,
                      env=setup.claude.env, logs=tmp_path)
    marker = f"session-{uuid.uuid4().hex}"
    script_session(down.model, marker, [ToolCall("Bash", {"command": "git status --short",
                                                          "description": "status"})])
    session = down.run(f"[{marker}] What changed?", where,
                       allowed_tools=["Bash", *MEMORY_TOOLS])
    assert session.returncode == 0, session.describe()
    assert all(h.get("exit_code") == 0 for h in session.hook_responses()), session.events
    kinds = sorted({r["kind"] for r in _spooled(stack.data_dir, session.session_id)})
    assert kinds == ["session_end", "stop", "tool"], kinds

    run(setup, setup.repo_a, [], "Hello again.")  # its SessionStart hook replays the spool
    deadline = time.monotonic() + WAIT_S
    while _capture_session(stack, session.session_id) is None and time.monotonic() < deadline:
        time.sleep(0.3)
    arrived = _capture_session(stack, session.session_id)
    assert arrived is not None, "the spooled events never reached the server"
    assert arrived["project"] == PAYMENTS
    assert _spooled(stack.data_dir, session.session_id) == []


# --- self-capture: no Anthropic key on the server, the session's Claude saves its decisions -----


@pytest.fixture(scope="module")
def keyless_port(stack: BenchStack) -> Iterator[int]:
    """A second MCP server on the same database and Temporal, started without an Anthropic key
    (as for a Claude Code subscriber): it can only count hook events."""
    port = free_port()
    log = (stack.root / "keyless-serve.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "team_memory", "serve", "--transport", "http"],
        env={**stack.child_env(), "TEAM_MEMORY_MCP_PORT": str(port),
             "TEAM_MEMORY_LOG_LEVEL": "WARNING"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (stack.root / "keyless-serve.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).is_success:
                    break
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_self_capture_saves_the_turns_decision_without_a_server_key(
        stack: BenchStack, keyless_port: int, cli: ClaudeCli, model: FakeAnthropic,
        proxy: RefusingProxy, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    repo = git_repository(tmp_path / "payments", "git@github.com:acme/payments.git")
    install_claude_code(home, stack.data_dir, keyless_port, options=["--self-capture"])
    claude = ClaudeCode(cli, home, model, proxy, logs=tmp_path)
    decision = (f"Decision {tag()}: ids are UUID v7 so that rows sort by creation time "
                "without a created_at index")
    marker = f"session-{uuid.uuid4().hex}"

    def asked(conversation: Conversation) -> bool:
        return is_session(conversation, marker) and ASK in conversation.last_user_text

    # Asked by the Stop hook (Claude Code sends the hook's reason as a user turn): save.
    model.when(asked, FakeAnthropic.tool_result(
        {"content": decision, "category": "architecture", "importance": 4}, name=SAVE))
    app = repo / "app.py"
    script_session(model, marker, [
        ToolCall("Read", {"file_path": str(app)}),
        ToolCall("Edit", {"file_path": str(app), "old_string": "ID_KIND = 'uuid4'",
                          "new_string": "ID_KIND = 'uuid7'"})])
    session = claude.run(f"[{marker}] Switch the ids to UUID v7.", repo,
                         allowed_tools=[*MEMORY_TOOLS, "Read", "Edit"])
    assert session.returncode == 0, session.describe()
    stops = session.hook_responses("Stop")
    assert [bool(json.loads(h["stdout"] or "{}").get("decision")) for h in stops] == \
        [True, False], stops  # asked once; the continuation's stop is let through
    requests = [c for c in model.conversations if is_session(c, marker)]
    assert sum(1 for c in requests if ASK in c.last_user_text) == 1
    assert wait_for(stack, stack.api_key, decision, PAYMENTS), "the decision was not saved"

    later = f"session-{uuid.uuid4().hex}"
    script_session(model, later, [])
    nxt = claude.run(f"[{later}] Hello.", repo, allowed_tools=MEMORY_TOOLS)
    assert nxt.returncode == 0, nxt.describe()
    context = session_context(nxt, session_conversation(model, later))
    assert decision in context and "Capture: by you" in context, context
