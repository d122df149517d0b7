"""What self-capture costs per session, measured with the real Claude Code CLI.

    python -m bench.self_capture_cost [--sessions 5]

Starts a throwaway `team-memory up` WITHOUT an Anthropic key (the case self-capture is for),
the pinned Claude Code CLI and a scripted model. Each session is one turn that reads and edits
a file; in a HOME installed with `--self-capture` the Stop hook then asks the model to save the
turn's decisions, and the scripted model answers with one save_memory call. The same sessions
run in a HOME with the plain install. Reported per session, both ways: model requests (turns),
the requests' size in tokens (characters / 4, as the product counts; the real API counts its
own way and serves the repeated prefix from its prompt cache), the scripted output tokens, wall
time and memories saved.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.stack import BenchStack, start_stack
from team_memory.hook.self_capture import ASK
from team_memory_core.rules.text import approx_tokens
from tests.support.anthropic_server import Conversation, FakeAnthropic
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

SAVE = "mcp__team-memory__save_memory"
TOOLS = ["Read", "Edit", SAVE]


@dataclass
class Sample:
    requests: list[int] = field(default_factory=list)
    input_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    saved: list[int] = field(default_factory=list)


def one_session(claude: ClaudeCode, repo: Path, sample: Sample, number: int) -> None:
    app = repo / "app.py"
    app.write_text(f"RETRIES = {number}\n")
    marker = f"bench-{uuid.uuid4().hex}"
    decision = f"Decision {marker}: webhooks are retried {number + 1} times, then parked"

    def asked(conversation: Conversation) -> bool:
        return is_session(conversation, marker) and ASK in conversation.last_user_text

    claude.model.when(asked, FakeAnthropic.tool_result(
        {"content": decision, "category": "architecture", "importance": 3}, name=SAVE))
    script_session(claude.model, marker, [
        ToolCall("Read", {"file_path": str(app)}),
        ToolCall("Edit", {"file_path": str(app), "old_string": f"RETRIES = {number}",
                          "new_string": f"RETRIES = {number + 1}"})])
    session = claude.run(f"[{marker}] Retry webhooks one more time.", repo,
                         allowed_tools=TOOLS)
    if session.returncode != 0:
        raise RuntimeError(session.describe())
    mine = [c for c in claude.model.conversations if is_session(c, marker)]
    sample.requests.append(len(mine))
    sample.input_tokens.append(sum(approx_tokens(json.dumps(c.body)) for c in mine))
    replies = [u for c in mine[-1:] for u in c.tool_uses]
    sample.output_tokens.append(sum(approx_tokens(json.dumps(u.get("input"))) for u in replies))
    sample.wall_s.append(session.wall_s)
    sample.saved.append(sum(1 for u in replies if u.get("name") == SAVE))


def measure(stack: BenchStack, cli: ClaudeCli, model: FakeAnthropic, proxy: RefusingProxy,
            root: Path, sessions: int) -> dict[str, Sample]:
    samples: dict[str, Sample] = {}
    for name, options in (("plain install", []), ("--self-capture", ["--self-capture"])):
        home = root / name.strip("-").replace(" ", "-")
        home.mkdir()
        repo = git_repository(home / "payments", "git@github.com:acme/payments.git")
        install_claude_code(home, stack.data_dir, stack.mcp_port, options=options)
        claude = ClaudeCode(cli, home, model, proxy, logs=root)
        sample = samples.setdefault(name, Sample())
        for number in range(sessions):
            one_session(claude, repo, sample, number)
    return samples


def table(samples: dict[str, Sample]) -> str:
    rows = ["| install | model requests | request tokens (chars/4) | output tokens | wall s | "
            "memories saved |", "| --- | --- | --- | --- | --- | --- |"]
    for name, s in samples.items():
        rows.append(f"| {name} | {statistics.median(s.requests):.0f} | "
                    f"{statistics.median(s.input_tokens):,.0f} | "
                    f"{statistics.median(s.output_tokens):.0f} | "
                    f"{statistics.median(s.wall_s):.2f} | {statistics.median(s.saved):.0f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="team-memory-self-capture-"))
    cli = install_cli()
    try:
        (root / "stack").mkdir()
        stack = start_stack(root / "stack")
        try:
            with FakeAnthropic() as model, RefusingProxy() as proxy:
                model.fallback = FakeAnthropic.text("ok")
                samples = measure(stack, cli, model, proxy, root, args.sessions)
        finally:
            stack.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Claude Code {cli.version}, {args.sessions} sessions each, medians per session")
    print(table(samples))


if __name__ == "__main__":
    main()
