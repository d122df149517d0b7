"""`team-memory doctor` from inside a repository, against a real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner, Result

from team_memory.cli import app
from tests.conftest import Stack
from tests.mcp_server.test_http import HttpServer, http_server  # noqa: F401 (fixture)
from tests.support.hooks import ROOT

pytestmark = pytest.mark.anyio


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "payments"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text(
        '[remote "origin"]\n\turl = https://github.com/acme/payments.git\n')
    monkeypatch.chdir(root)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("TEAM_MEMORY_PROJECT", raising=False)
    return root


@pytest.fixture
def installed(running: Stack, http_server: HttpServer, repo: Path, tmp_path: Path,  # noqa: F811
              monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(home, data dir) of `install claude-code` against the running server, from ``repo``."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    (data / "local-api-key").write_text(running.api_key + "\n")
    monkeypatch.setenv("TEAM_MEMORY_MCP_PORT", http_server.base.rsplit(":", 1)[1])
    done = CliRunner().invoke(app, ["install", "claude-code", "--home", str(home),
                                    "--data-dir", str(data)])
    assert done.exit_code == 0, done.output
    return home, data


def _edit(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


async def _doctor(home: Path) -> Result:
    return await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(app, ["doctor", "--home", str(home)]))


async def test_a_good_setup_reports_the_repository_project_end_to_end(
    running: Stack, installed: tuple[Path, Path]
) -> None:
    home, _ = installed
    result = await _doctor(home)
    assert result.exit_code == 0, result.output
    assert "project        github.com/acme/payments (from git remote" in result.output
    assert "✔ project match  memories saved here go to github.com/acme/payments" in \
        result.output
    assert f"valid: tenant {running.principal.tenant_name}, read-write" in result.output
    assert "! capture" in result.output and "--self-capture" in result.output
    assert "✔ spool          empty" in result.output


async def test_an_old_install_is_diagnosed_with_the_fix(installed: tuple[Path, Path]) -> None:
    home, _ = installed
    _edit(home / ".claude.json", lambda c: c["mcpServers"]["team-memory"].pop("headersHelper"))
    _edit(home / ".claude" / "settings.json",
          lambda s: s["hooks"]["PostToolUse"][0].update(matcher="*"))
    result = await _doctor(home)
    assert result.exit_code == 1, result.output
    assert "✖ project match" in result.output and "default" in result.output
    assert "PostToolUse runs for *" in result.output
    assert "fix: reinstall: team-memory install claude-code" in result.output


async def test_server_down_and_waiting_events_are_reported(installed: tuple[Path, Path]) -> None:
    home, data = installed
    (data / "hook-spool.jsonl").write_text('{"key": "a"}\n{"key": "b"}\n')
    _edit(home / ".claude.json",
          lambda c: c["mcpServers"]["team-memory"].update(url="http://127.0.0.1:9/mcp"))
    result = await _doctor(home)
    assert result.exit_code == 1, result.output
    assert "✖ server" in result.output and "fix: start it: team-memory up" in result.output
    assert "2 hook events wait to be sent" in result.output
