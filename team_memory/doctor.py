"""`team-memory doctor`: is Claude Code, in this directory, connected the way Team Memory needs?

It reads Claude Code's configuration as Claude Code does (local, then project, then user scope
for the MCP server; user and project settings for hooks), runs the MCP entry's headersHelper
in this directory exactly as Claude Code would, asks the server who the key is and which
project it files this directory's memories under, and looks at the capture mode and the
hook spool. Every finding comes with what to do about it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from team_memory.claude_code_files import (
    HOOK_MODULE,
    INSTALLED_EVENTS,
    SERVER_NAME,
    TOOL_MATCHER,
)
from team_memory_core.hook_protocol import SESSION_START, SPOOL_FILE
from team_memory_core.project_identity import identify, repository_root

Status = Literal["ok", "warn", "fail"]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MARK = {"ok": "✔", "warn": "!", "fail": "✖"}


@dataclass(frozen=True)
class Finding:
    status: Status
    topic: str
    detail: str
    fix: str | None = None


@dataclass
class ClaudeConfig:
    """The Team Memory parts of Claude Code's configuration, seen from one directory."""

    server: dict[str, Any] | None = None
    server_source: str = ""
    hooks: dict[str, list[str]] = field(default_factory=dict)
    matchers: list[str] = field(default_factory=list)
    hook_sources: set[str] = field(default_factory=set)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_config(home: Path, root: Path) -> ClaudeConfig:
    config = ClaudeConfig()
    user = _json(home / ".claude.json")
    local = user.get("projects", {}).get(str(root), {}) if isinstance(
        user.get("projects"), dict) else {}
    for source, servers in ((f"local scope ({home / '.claude.json'})", local.get("mcpServers")),
                            (f"project scope ({root / '.mcp.json'})",
                             _json(root / ".mcp.json").get("mcpServers")),
                            (f"user scope ({home / '.claude.json'})", user.get("mcpServers"))):
        if isinstance(servers, dict) and isinstance(servers.get(SERVER_NAME), dict):
            config.server, config.server_source = servers[SERVER_NAME], source
            break
    for source, path in (("user", home / ".claude" / "settings.json"),
                         ("project", root / ".claude" / "settings.json"),
                         ("project", root / ".claude" / "settings.local.json")):
        _collect_hooks(config, source, _json(path).get("hooks"))
    return config


def _collect_hooks(config: ClaudeConfig, source: str, hooks: object) -> None:
    if not isinstance(hooks, dict):
        return
    for event, groups in hooks.items():
        for group in groups if isinstance(groups, list) else []:
            commands = [str(h.get("command", "")) for h in group.get("hooks", [])
                        if isinstance(h, dict)] if isinstance(group, dict) else []
            ours = [c for c in commands if f" -m {HOOK_MODULE} " in c]
            if ours:
                config.hooks.setdefault(event, []).extend(ours)
                config.hook_sources.add(source)
                if event == "PostToolUse":
                    config.matchers.append(str(group.get("matcher", "*")))


def expand(value: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` as Claude Code expands them in headers."""
    return _VAR.sub(lambda m: os.environ.get(m.group(1), m.group(2) or m.group(0)), value)


def run_headers_helper(command: str, cwd: Path, url: str) -> dict[str, str]:
    env = {**os.environ, "CLAUDE_CODE_MCP_SERVER_NAME": SERVER_NAME,
           "CLAUDE_CODE_MCP_SERVER_URL": url}
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=10, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(done.stderr.strip() or f"exit {done.returncode}, no output")
    headers = json.loads(done.stdout)
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise RuntimeError("it must print a JSON object of string headers")
    return headers


def _option(command: str, name: str) -> str | None:
    parts = shlex.split(command)
    return parts[parts.index(name) + 1] if name in parts[:-1] else None


@dataclass
class Doctor:
    cwd: Path
    home: Path
    findings: list[Finding] = field(default_factory=list)

    def note(self, status: Status, topic: str, detail: str, fix: str | None = None) -> None:
        self.findings.append(Finding(status, topic, detail, fix))

    def run(self) -> list[Finding]:
        project, source = identify(self.cwd)
        self.note("ok", "project", f"{project} (from {source})")
        root = repository_root(self.cwd.resolve()) or self.cwd.resolve()
        config = read_config(self.home, root)
        self._check_hooks(config)
        headers = self._check_server_entry(config)
        if config.server is not None and headers is not None:
            self._check_server(str(config.server.get("url", "")), headers, project, config)
        self._check_spool(config)
        return self.findings

    def _check_hooks(self, config: ClaudeConfig) -> None:
        missing = [e for e in INSTALLED_EVENTS if e not in config.hooks]
        if missing:
            self.note("fail" if SESSION_START in missing else "warn", "hooks",
                      f"not installed for {', '.join(missing)}",
                      "team-memory install claude-code")
        else:
            self.note("ok", "hooks", f"{', '.join(INSTALLED_EVENTS)} "
                      f"({' and '.join(sorted(config.hook_sources))} settings)")
        if any(m != TOOL_MATCHER for m in config.matchers):
            self.note("warn", "hooks", f"PostToolUse runs for {', '.join(config.matchers)}, "
                      f"not {TOOL_MATCHER}: either a hook process starts for every tool "
                      "call, reads included, or save_memory's files are not anchored",
                      "reinstall: team-memory install claude-code")
        for command in {c for commands in config.hooks.values() for c in commands}:
            python = shlex.split(command)[0]
            if not os.access(python, os.X_OK):
                self.note("fail", "hooks", f"{python} is not an executable Python",
                          "reinstall from the Team Memory checkout you use")
                break

    def _check_server_entry(self, config: ClaudeConfig) -> dict[str, str] | None:
        entry = config.server
        if entry is None:
            self.note("fail", "MCP server", "Claude Code has no team-memory server here",
                      "team-memory install claude-code")
            return None
        url = str(entry.get("url", ""))
        self.note("ok", "MCP server", f"{url} ({config.server_source})")
        headers = {k: expand(str(v)) for k, v in (entry.get("headers") or {}).items()}
        helper = entry.get("headersHelper")
        if not helper:
            self.note("warn", "project header", "no headersHelper: calls that name no project "
                      "land in the server's default project, not this repository's",
                      "reinstall: team-memory install claude-code")
            return headers
        try:
            headers.update(run_headers_helper(str(helper), self.cwd, url))
        except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as error:
            self.note("fail", "project header", f"the headersHelper failed: {error}",
                      f"run it here to see why: {helper}")
        return headers

    def _check_server(self, url: str, headers: dict[str, str], project: str,
                      config: ClaudeConfig) -> None:
        base = url.removesuffix("/mcp")
        try:
            ready = httpx.get(f"{base}/readyz", timeout=5)
            whoami = httpx.get(f"{base}/api/whoami", headers=headers, timeout=5)
        except httpx.HTTPError as error:
            self.note("fail", "server", f"{base} does not answer ({type(error).__name__}); "
                      "hooks spool their events meanwhile", "start it: team-memory up")
            return
        checks = ready.json().get("checks", {}) if ready.headers.get(
            "content-type", "").startswith("application/json") else {}
        failing = {k: v for k, v in checks.items() if v != "ok"}
        self.note("ok" if ready.status_code == 200 else "fail", "server",
                  f"{base}: " + ("ready" if ready.status_code == 200 else
                                 f"not ready ({failing or ready.status_code})"),
                  None if ready.status_code == 200 else "team-memory status")
        if whoami.status_code == 401:
            self.note("fail", "key", "the server refuses the key Claude Code sends",
                      "set TEAM_MEMORY_API_KEY to a valid key (team-memory key create) or "
                      "reinstall")
            return
        if whoami.status_code != 200:
            self.note("fail", "key", f"/api/whoami answered {whoami.status_code}")
            return
        me = whoami.json()
        access = "read-only" if me["read_only"] else "read-write"
        self.note("ok", "key", f"valid: tenant {me['tenant']}, {access}")
        filed = me["project"]
        if filed == project:
            self.note("ok", "project match", f"memories saved here go to {filed}")
        else:
            why = "the key is bound to it" if me.get("project_locked") else "no project header"
            self.note("warn" if me.get("project_locked") else "fail", "project match",
                      f"the server files memories from here under {filed} ({why}), the hooks "
                      f"under {project}", None if me.get("project_locked") else
                      "reinstall: team-memory install claude-code")
        self._check_capture(bool(me.get("capture")), config)

    def _check_capture(self, server_distills: bool, config: ClaudeConfig) -> None:
        self_capture = any(_option(c, "--capture") == "claude"
                           for c in config.hooks.get("Stop", []))
        if server_distills:
            self.note("ok", "capture", "on: the server distills hook events with Claude Haiku")
        elif self_capture:
            self.note("ok", "capture", "self-capture: this session's Claude is asked to save "
                      "a turn's decisions when it changed the repository")
        else:
            self.note("warn", "capture", "off: no ANTHROPIC_API_KEY on the server, so only "
                      "explicit memories are kept",
                      "set ANTHROPIC_API_KEY for the server and worker, or reinstall with "
                      "--self-capture")

    def _check_spool(self, config: ClaudeConfig) -> None:
        data_dirs = {d for c in config.hooks.get("Stop", []) if (d := _option(c, "--data-dir"))}
        waiting = 0
        for directory in map(Path, data_dirs):
            for path in directory.glob(f"{SPOOL_FILE}*"):
                waiting += sum(1 for line in path.read_text(errors="replace").splitlines()
                               if line.strip())
        if waiting:
            self.note("warn", "spool", f"{waiting} hook events wait to be sent (the server was "
                      "unreachable); the next hook that reaches it sends them")
        else:
            self.note("ok", "spool", "empty: every hook event reached the server")


def render(findings: list[Finding], cwd: Path) -> str:
    lines = [f"Team Memory doctor, in {cwd}"]
    for finding in findings:
        lines.append(f"  {_MARK[finding.status]} {finding.topic:<14} {finding.detail}")
        if finding.fix:
            lines.append(f"  {'':<16} fix: {finding.fix}")
    return "\n".join(lines)
