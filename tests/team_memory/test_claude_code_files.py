"""install then uninstall leaves Claude Code's configuration exactly as it was."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from team_memory.claude_code_files import InstallError, Paths, install, mcp_entry, uninstall
from team_memory.cli import app

EVENTS = ["SessionStart", "PostToolUse", "Stop", "SessionEnd"]
OTHER_SETTINGS = (
    '{\n    "model": "opus",\n    "hooks": {\n        "PostToolUse": [\n            {\n'
    '                "matcher": "Write|Edit",\n                "hooks": [\n'
    '                    {"type": "command", "command": "prettier --write \\"$FILE\\""}\n'
    '                ]\n            }\n        ]\n    },\n    "env": {"FOO": "bär"}\n}'
)
OTHER_CLAUDE_JSON = ('{"numStartups": 7, "mcpServers": {"github": {"type": "http", '
                     '"url": "https://api.githubcopilot.com/mcp/"}}, "projects": {}}\n')


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _install(paths: Paths, data_dir: Path) -> None:
    install(paths, data_dir,
            commands={e: f"/venv/bin/python -m team_memory.hook {e} --server http://x:1"
                      for e in EVENTS},
            entry=mcp_entry(paths.scope, "http://127.0.0.1:8765/mcp", "tm_secret",
                            "/venv/bin/python -m team_memory.hook headers --data-dir /d"),
            add_command="claude mcp add ...")


@pytest.mark.parametrize("scope", ["user", "project"])
@pytest.mark.parametrize("existing", ["nothing", "other config"])
def test_install_then_uninstall_is_byte_identical(tmp_path: Path, scope: str,
                                                  existing: str) -> None:
    home, project, data = tmp_path / "home", tmp_path / "project", tmp_path / "data"
    home.mkdir()
    project.mkdir()
    paths = Paths.for_scope(scope, home, project)  # type: ignore[arg-type]
    if existing == "other config":
        paths.settings.parent.mkdir(parents=True)
        paths.settings.write_text(OTHER_SETTINGS)  # no final newline, 4-space indent
        paths.mcp.write_text(OTHER_CLAUDE_JSON)
    before = _snapshot(tmp_path / "home") | _snapshot(tmp_path / "project")

    _install(paths, data)
    settings = json.loads(paths.settings.read_text())
    assert set(settings["hooks"]) == set(EVENTS)
    assert json.loads(paths.mcp.read_text())["mcpServers"]["team-memory"]["url"].endswith("/mcp")
    if existing == "other config":
        assert settings["hooks"]["PostToolUse"][0]["matcher"] == "Write|Edit"
        assert settings["env"] == {"FOO": "bär"}
    uninstall(paths, data)

    after = _snapshot(tmp_path / "home") | _snapshot(tmp_path / "project")
    assert after == before
    assert paths.settings.parent.exists() == (existing == "other config")


def test_project_scope_never_writes_the_key(tmp_path: Path) -> None:
    paths = Paths.for_scope("project", tmp_path, tmp_path)
    _install(paths, tmp_path / "data")
    text = paths.mcp.read_text()
    assert "tm_secret" not in text
    assert "${TEAM_MEMORY_API_KEY}" in text


def test_edits_made_after_install_survive_uninstall(tmp_path: Path) -> None:
    paths = Paths.for_scope("user", tmp_path, tmp_path)
    paths.settings.parent.mkdir(parents=True)
    paths.settings.write_text(OTHER_SETTINGS)
    _install(paths, tmp_path / "data")
    settings = json.loads(paths.settings.read_text())
    settings["theme"] = "dark"
    settings["hooks"]["Stop"].append({"hooks": [{"type": "command", "command": "say done"}]})
    paths.settings.write_text(json.dumps(settings, indent=4))
    uninstall(paths, tmp_path / "data")
    left = json.loads(paths.settings.read_text())
    assert left["theme"] == "dark"
    assert left["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": "say done"}]}]
    assert "SessionStart" not in left["hooks"]
    assert left["hooks"]["PostToolUse"][0]["matcher"] == "Write|Edit"
    assert len(left["hooks"]["PostToolUse"]) == 1
    assert not paths.mcp.exists()  # unchanged since install, and absent before it


def test_invalid_settings_write_nothing(tmp_path: Path) -> None:
    paths = Paths.for_scope("user", tmp_path, tmp_path)
    paths.settings.parent.mkdir(parents=True)
    paths.settings.write_text("{ not json")
    before = _snapshot(tmp_path)
    with pytest.raises(InstallError, match="not valid JSON"):
        _install(paths, tmp_path / "data")
    assert _snapshot(tmp_path) == before


def test_unreadable_mcp_config_prints_the_claude_mcp_add_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text("{ broken")
    data = tmp_path / "data"
    data.mkdir()
    (data / "local-api-key").write_text("tm_localkey\n")
    result = CliRunner().invoke(app, ["install", "claude-code", "--scope", "user", "--home",
                                      str(home), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    printed = result.output[result.output.index("claude mcp add-json --scope user team-memory "):]
    entry = json.loads(shlex.split(printed.splitlines()[0])[-1])
    assert entry["headers"] == {"Authorization": "Bearer tm_localkey"}
    assert entry["headersHelper"].endswith(f"-m team_memory.hook headers --data-dir {data}")
    assert (home / ".claude.json").read_text() == "{ broken"
    hooks = json.loads((home / ".claude" / "settings.json").read_text())["hooks"]
    command = hooks["PostToolUse"][0]["hooks"][0]["command"]
    assert "-m team_memory.hook PostToolUse --server http://127.0.0.1:8765" in command
    assert str(data) in command
    result = CliRunner().invoke(app, ["uninstall", "claude-code", "--scope", "user", "--home",
                                      str(home), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert not (home / ".claude").exists()
    assert (home / ".claude.json").read_text() == "{ broken"


def test_reinstall_then_uninstall_is_still_exact(tmp_path: Path) -> None:
    paths = Paths.for_scope("user", tmp_path, tmp_path)
    paths.mcp.write_text(OTHER_CLAUDE_JSON)
    before = _snapshot(tmp_path)
    _install(paths, tmp_path / "data")
    _install(paths, tmp_path / "data")
    assert len(json.loads(paths.settings.read_text())["hooks"]["Stop"]) == 1
    uninstall(paths, tmp_path / "data")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("scope", ["user", "project"])
def test_install_sends_the_repository_project_and_hooks_only_summarised_tools(
    tmp_path: Path, scope: str
) -> None:
    home, project, data = tmp_path / "home", tmp_path / "repo", tmp_path / "data"
    home.mkdir()
    project.mkdir()
    data.mkdir()
    (data / "local-api-key").write_text("tm_localkey\n")
    result = CliRunner().invoke(app, ["install", "claude-code", "--scope", scope, "--home",
                                      str(home), "--project-dir", str(project),
                                      "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    paths = Paths.for_scope(scope, home, project)  # type: ignore[arg-type]
    hooks = json.loads(paths.settings.read_text())["hooks"]
    matchers = [g["matcher"] for g in hooks["PostToolUse"]]
    assert matchers == ["Bash|Edit|MultiEdit|Write|NotebookEdit|mcp__team-memory__save_memory"]
    assert all("matcher" not in g for e in ("SessionStart", "Stop", "SessionEnd")
               for g in hooks[e])
    entry = json.loads(paths.mcp.read_text())["mcpServers"]["team-memory"]
    helper = shlex.split(entry["headersHelper"])
    assert helper[1:4] == ["-m", "team_memory.hook", "headers"]
    assert ("--auth" in helper) == (scope == "project")
    committed_key = "tm_localkey" in paths.mcp.read_text()
    assert committed_key == (scope == "user")
