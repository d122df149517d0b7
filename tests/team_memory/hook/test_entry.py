"""`python -m team_memory.hook` as Claude Code runs it: never failing, fast when the server is
down, and the headersHelper naming the same project the hooks send."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from team_memory.hook.events import run
from team_memory.hook.records import event_record
from team_memory_core.hook_protocol import PROJECT_HEADER
from team_memory_core.project_identity import project_for
from tests.support.hooks import ROOT, down, git_repo, payload


@pytest.mark.parametrize("auth", [False, True])
def test_headers_helper_prints_the_directory_project(tmp_path: Path, auth: bool) -> None:
    repo = git_repo(tmp_path / "payments", "git@github.com:acme/payments.git")
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


def test_the_cli_runs_the_same_hook(tmp_path: Path) -> None:
    """`team-memory hook EVENT` (through the CLI) does what `python -m team_memory.hook` does."""
    config = down(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "team_memory", "hook", "Stop", "--server", config.server,
         "--data-dir", str(config.data_dir)],
        input=json.dumps(payload("stop.json", tmp_path)), capture_output=True, text=True,
        cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    spooled = json.loads(config.spool.read_text())
    assert spooled["kind"] == "stop" and spooled["session_id"] == payload("stop.json")[
        "session_id"]
