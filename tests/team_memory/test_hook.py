"""The hook entry point on its own: compact records, the spool, and fast failure when down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from team_memory import embedded, self_capture
from team_memory.hook import (
    SUMMARISED_TOOLS,
    HookConfig,
    capture,
    event_record,
    replay,
    run,
    spool,
)
from team_memory_core.project_identity import PROJECT_HEADER, project_for

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "claude_code"


def payload(name: str, cwd: Path | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    if cwd is not None:
        data["cwd"] = str(cwd)
    return data


def down(tmp_path: Path) -> HookConfig:
    return HookConfig(f"http://127.0.0.1:{embedded.free_port()}", tmp_path / "data", "tm_x")


def test_records_are_compact_and_never_carry_file_contents() -> None:
    for name in ("post_tool_use_edit.json", "post_tool_use_write.json",
                 "post_tool_use_bash.json"):
        record = event_record("PostToolUse", payload(name), "github.com/acme/shop")
        assert record is not None
        text = json.dumps(record)
        assert "MUST-NOT-LEAVE" not in text
        assert len(record["summary"]) <= 1200
        assert record["key"] == f"tool:{payload(name)['tool_use_id']}"
    edit = event_record("PostToolUse", payload("post_tool_use_edit.json"), "p")
    assert edit is not None and "uuid7" in edit["summary"]
    assert edit["files"] == ["/home/dev/shop/app/models/order.py"]
    write = event_record("PostToolUse", payload("post_tool_use_write.json"), "p")
    assert write is not None and write["summary"].endswith("(40 lines)")


def test_only_the_summarised_tools_are_sent() -> None:
    assert event_record("PostToolUse", payload("post_tool_use_read.json"), "p") is None
    bash = payload("post_tool_use_bash.json")
    for tool in ("mcp__team-memory__save_memory", "Grep", "WebFetch", "TodoWrite"):
        assert event_record("PostToolUse", {**bash, "tool_name": tool}, "p") is None
    for tool in SUMMARISED_TOOLS:
        assert event_record("PostToolUse", {**bash, "tool_name": tool}, "p") is not None


def test_an_event_without_a_session_id_is_not_sent() -> None:
    stop = {k: v for k, v in payload("stop.json").items() if k != "session_id"}
    assert event_record("Stop", stop, "p") is None
    assert event_record("Stop", {**stop, "session_id": ""}, "p") is None


def _git_repo(root: Path, origin: str) -> Path:
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text(f'[remote "origin"]\n\turl = {origin}\n')
    (root / "src").mkdir()
    return root


@pytest.mark.parametrize("auth", [False, True])
def test_headers_helper_prints_the_directory_project(tmp_path: Path, auth: bool) -> None:
    repo = _git_repo(tmp_path / "payments", "git@github.com:acme/payments.git")
    data = tmp_path / "data"
    data.mkdir()
    (data / "local-api-key").write_text("tm_local\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAM_MEMORY_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "team_memory.hook", "headers", "--data-dir", str(data),
         *(["--auth", "key"] if auth else [])],
        capture_output=True, text=True, cwd=repo / "src", env=env, timeout=30, check=True)
    headers = json.loads(done.stdout)
    assert headers[PROJECT_HEADER] == "github.com/acme/payments"
    assert headers.get("Authorization") == ("Bearer tm_local" if auth else None)
    # The same identity the hooks send from that directory.
    record = event_record("Stop", payload("stop.json", repo / "src"),
                          project_for(repo / "src"))
    assert record is not None and record["project"] == headers[PROJECT_HEADER]


def test_events_without_a_tool_use_id_get_distinct_keys() -> None:
    stop = payload("stop.json")
    first = event_record("Stop", stop, "p", now_ns=1)
    again = event_record("Stop", stop, "p", now_ns=2)
    assert first is not None and again is not None
    assert first["key"] != again["key"] and first["key"].startswith("stop:")
    assert first["summary"].startswith("Done. orders.id is now a UUID v7")


def test_server_down_spools_redacted_records(tmp_path: Path) -> None:
    config = down(tmp_path)
    assert capture(config, "PostToolUse", payload("post_tool_use_bash.json", tmp_path))[0] \
        == "spooled"
    assert capture(config, "Stop", payload("stop.json", tmp_path))[0] == "spooled"
    lines = config.spool.read_text().splitlines()
    assert len(lines) == 2
    assert "sk-ant-api03" not in config.spool.read_text()
    assert "[REDACTED:" in json.loads(lines[0])["summary"]
    assert config.spool.stat().st_mode & 0o777 == 0o600


def test_replay_keeps_what_it_cannot_deliver(tmp_path: Path) -> None:
    config = down(tmp_path)
    record = event_record("Stop", payload("stop.json"), "p")
    assert record is not None
    spool(config, [record, record])
    assert replay(config) == 0
    claimed = list(config.data_dir.glob("hook-spool.jsonl.*.replaying"))
    assert len(claimed) == 1 and len(claimed[0].read_text().splitlines()) == 2
    spool(config, [record])  # new events go to a fresh spool meanwhile
    assert len(config.spool.read_text().splitlines()) == 1


def test_session_start_without_server_still_answers(tmp_path: Path) -> None:
    out = json.loads(run("SessionStart", payload("session_start.json", tmp_path),
                         down(tmp_path)))
    context = out["hookSpecificOutput"]["additionalContext"]
    assert out["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert "did not answer" in context and "kept locally" in context


def test_entry_point_never_fails_claude_code(tmp_path: Path) -> None:
    config = down(tmp_path)
    for stdin in ("not json", json.dumps(payload("post_tool_use_edit.json", tmp_path))):
        done = subprocess.run(
            [sys.executable, "-m", "team_memory.hook", "PostToolUse", "--server",
             config.server, "--data-dir", str(config.data_dir)],
            input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)
        assert done.returncode == 0
        assert done.stdout == ""
    assert len(config.spool.read_text().splitlines()) == 1


def test_unknown_event_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown hook event"):
        run("PreCompact", {}, down(tmp_path))


def test_self_capture_asks_at_most_max_asks_times_a_session(tmp_path: Path) -> None:
    stop = {"session_id": "s1"}
    answers = []
    for _ in range(self_capture.MAX_ASKS + 3):
        self_capture.note_change(tmp_path, "s1")
        answers.append(self_capture.ask_on_stop(tmp_path, stop, server_distills=False))
    assert sum(a is not None for a in answers) == self_capture.MAX_ASKS
    assert self_capture.ask_on_stop(tmp_path, {}, server_distills=False) is None
