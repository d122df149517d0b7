"""What Team Memory's Claude Code hooks add to each tool call, measured with the real CLI.

    python -m bench.claude_code_overhead [--rounds 5] [--sessions 3] [--anchored N]
                                         [--output FILE]

Starts a throwaway `team-memory up`, the pinned Claude Code CLI (tests/e2e/claude_code) and a
scripted model (tests/support/anthropic_server.py). Each session makes ``--rounds`` rounds of
Read, Grep, Glob, Bash, Edit and mcp__team-memory__search_memory, one tool call per model turn,
in a git repository; the same sessions run in a HOME where `team-memory install claude-code`
put its hooks, and in one with the same MCP server but no hooks. Sessions alternate between
the two so machine noise falls on both.

- wall time per tool call: from the model's tool_use reply to the request that carries the
  result (Claude Code runs the tool, then waits for every PostToolUse hook before it asks the
  model again), by tool, median over all calls; overhead = with hooks - without.
- CPU per tool call: Claude Code and everything it waited for (getrusage of children: the
  hook processes included) plus the MCP server process (/proc via psutil), with hooks minus
  without, after removing what a session with no tool call costs (SessionStart, Stop,
  SessionEnd), divided by the number of calls.

The installed PostToolUse matcher is printed with the result, to label before/after.
``--anchored N`` first saves N memories, each citing its own file of the repository
(docs/freshness.md): the hooks then report those files' states at SessionStart and check them
by stat after every Bash command, as in a project whose memories are about its code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from bench.stack import BenchStack, in_process, start_stack
from team_memory_core.project_identity import project_for
from tests.support.anthropic_server import FakeAnthropic
from tests.support.claude_code import (
    ClaudeCli,
    ClaudeCode,
    RefusingProxy,
    ToolCall,
    git_repository,
    install_claude_code,
    install_cli,
    is_session,
    script_session,
)

SEARCH = "mcp__team-memory__search_memory"
TOOLS = ["Read", "Grep", "Glob", "Bash", "Edit", SEARCH]


def round_calls(repo: Path, round_number: int) -> list[ToolCall]:
    """One of each tool; the Edit bumps a counter in a file the Read just read."""
    counter = repo / "counter.py"
    return [
        ToolCall("Read", {"file_path": str(counter)}),
        ToolCall("Grep", {"pattern": "count", "path": str(repo)}),
        ToolCall("Glob", {"pattern": "**/*.py", "path": str(repo)}),
        ToolCall("Bash", {"command": "git status --short", "description": "status"}),
        ToolCall("Edit", {"file_path": str(counter), "old_string": f"count = {round_number}",
                          "new_string": f"count = {round_number + 1}"}),
        ToolCall(SEARCH, {"query": "Which primary key type do we use?"}),
    ]


@dataclass
class Variant:
    name: str
    claude: ClaudeCode
    gaps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    wall: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))


@contextmanager
def cpu_meter(stack: BenchStack) -> Iterator[list[float]]:
    """Seconds of CPU used meanwhile by waited-for children (Claude Code and its hooks) and
    by the MCP server; the list is filled when the block ends."""
    server = stack.children["mcp"]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = server.cpu_times()
    spent: list[float] = []
    yield spent
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_server = server.cpu_times()
    spent.append(after_children.ru_utime - before_children.ru_utime
                 + after_children.ru_stime - before_children.ru_stime
                 + after_server.user - before_server.user
                 + after_server.system - before_server.system)


def run_session(variant: Variant, stack: BenchStack, repo: Path, rounds: int) -> None:
    (repo / "counter.py").write_text("count = 0\n")
    calls = [call for r in range(rounds) for call in round_calls(repo, r)]
    marker = f"bench-{uuid.uuid4().hex}"
    model = variant.claude.model
    script_session(model, marker, calls)
    with cpu_meter(stack) as cpu:
        session = variant.claude.run(f"[{marker}] work", repo,
                                     allowed_tools=[*TOOLS[:5], SEARCH])
    if session.returncode != 0:
        raise RuntimeError(f"{variant.name}: {session.describe()}")
    variant.cpu[len(calls)].append(cpu[0])
    variant.wall[len(calls)].append(session.wall_s)
    mine = [c for c in model.conversations if is_session(c, marker)]
    for asked, answered in pairwise(mine):
        outcome = answered.outcomes[-1]
        if outcome.is_error:
            raise RuntimeError(f"{variant.name}: {outcome.name} failed: {outcome.text[:300]}")
        variant.gaps[outcome.name].append(answered.at - asked.at)


def matcher(home: Path) -> str:
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    groups = settings.get("hooks", {}).get("PostToolUse", [])
    return ", ".join(repr(g.get("matcher", "")) for g in groups) or "(none)"


def without_hooks(home: Path) -> None:
    """Keep the MCP server entry, drop the hooks: Team Memory's tools still work."""
    settings_file = home / ".claude" / "settings.json"
    settings = json.loads(settings_file.read_text())
    settings.pop("hooks", None)
    settings_file.write_text(json.dumps(settings, indent=2))


def report(hooked: Variant, bare: Variant, calls: int, installed: str) -> str:
    ms = 1000.0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"Claude Code {hooked.claude.cli.version}, PostToolUse matcher {installed}, "
             f"{os.cpu_count()} cores, load average at the end {load}",
             "| tool | calls | without hooks p50 | with hooks p50 | added p50 |",
             "| --- | --- | --- | --- | --- |"]
    every_bare, every_hooked = [], []
    for tool in TOOLS:
        b, h = bare.gaps.get(tool, []), hooked.gaps.get(tool, [])
        every_bare += b
        every_hooked += h
        if b and h:
            added = statistics.median(h) - statistics.median(b)
            lines.append(f"| {tool} | {len(h)} | {statistics.median(b) * ms:.0f} ms | "
                         f"{statistics.median(h) * ms:.0f} ms | {added * ms:+.0f} ms |")
    added_all = statistics.median(every_hooked) - statistics.median(every_bare)
    lines.append(f"| all | {len(every_hooked)} | {statistics.median(every_bare) * ms:.0f} ms | "
                 f"{statistics.median(every_hooked) * ms:.0f} ms | {added_all * ms:+.0f} ms |")
    fixed = statistics.median(hooked.cpu[0]) - statistics.median(bare.cpu[0])
    work = statistics.median(hooked.cpu[calls]) - statistics.median(bare.cpu[calls])
    wall_fixed = statistics.median(hooked.wall[0]) - statistics.median(bare.wall[0])
    lines += ["",
              f"CPU added per tool call (Claude Code + hooks + MCP server): "
              f"{(work - fixed) / calls * ms:.0f} ms",
              f"per session without tool calls (SessionStart, Stop, SessionEnd hooks): "
              f"{wall_fixed * ms:+.0f} ms wall, {fixed * ms:+.0f} ms CPU"]
    return "\n".join(lines)


def seed_anchored(stack: BenchStack, repo: Path, count: int) -> None:
    """``count`` memories of the repository's project, each citing its own file."""
    (repo / "src").mkdir(exist_ok=True)
    for number in range(count):
        (repo / "src" / f"m{number}.py").write_text(f"VALUE_{number} = {number}\n")

    async def save() -> None:
        local = await in_process(stack)
        scoped = local.principal.model_copy(update={"workspace_project": project_for(repo)})
        try:
            for number in range(count):
                await local.service.save(scoped, f"src/m{number}.py holds VALUE_{number}, "
                                         f"setting number {number}.",
                                         files=[f"src/m{number}.py"])
        finally:
            await local.pool.close()

    if count:
        asyncio.run(save())


def measure(cli: ClaudeCli, root: Path, rounds: int, sessions: int, anchored: int = 0) -> str:
    (root / "stack").mkdir()
    stack = start_stack(root / "stack")
    try:
        with FakeAnthropic() as model, RefusingProxy() as proxy:
            model.fallback = FakeAnthropic.text("ok")
            variants = []
            for name in ("hooks", "bare"):
                home = root / name
                home.mkdir()
                install_claude_code(home, stack.data_dir, stack.mcp_port)
                if name == "bare":
                    without_hooks(home)
                variants.append(Variant(name, ClaudeCode(cli, home, model, proxy, logs=home)))
            hooked, bare = variants
            installed = matcher(hooked.claude.home)
            repo = git_repository(root / "repo", "git@github.com:acme/payments.git")
            (repo / "counter.py").write_text("count = 0\n")
            seed_anchored(stack, repo, anchored)
            for number in range(sessions):
                for variant in (variants if number % 2 == 0 else variants[::-1]):
                    run_session(variant, stack, repo, 0)
                    run_session(variant, stack, repo, rounds)
                print(f"  session {number + 1}/{sessions} done", file=sys.stderr, flush=True)
            return (f"{anchored} memories anchored to files of the repository\n"
                    + report(hooked, bare, rounds * len(TOOLS), installed))
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.claude_code_overhead",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the six tools per "
                        "session (default 5: 30 tool calls)")
    parser.add_argument("--sessions", type=int, default=3, help="sessions per variant")
    parser.add_argument("--anchored", type=int, default=0, help="memories citing files of "
                        "the repository, saved first (default 0)")
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    cli = install_cli()
    root = Path(tempfile.mkdtemp(prefix="team-memory-cc-overhead-"))
    root.chmod(0o755)  # pgserver's own user (when run as root) traverses it
    try:
        text = measure(cli, root, args.rounds, args.sessions, args.anchored)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
