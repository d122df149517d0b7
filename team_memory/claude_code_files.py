"""`team-memory install claude-code` / `uninstall claude-code`: MCP registration and hooks.

Scopes (as Claude Code defines them):
- user: hooks in ``~/.claude/settings.json``, the MCP server in ``~/.claude.json``
  (``mcpServers``, where ``claude mcp add --scope user`` puts it; the key is written there,
  in the user's private file);
- project: hooks in ``<project>/.claude/settings.json``, the MCP server in
  ``<project>/.mcp.json``. Both files are meant to be committed, so the key is not written:
  the header reads ``${TEAM_MEMORY_API_KEY}``, which Claude Code expands from the environment.

Uninstall is exact. Install records in a manifest (in the data dir) each file's original bytes
(or that it did not exist) and the digest of what it wrote. If a file is unchanged since, the
original bytes come back byte for byte (or the file is removed); if someone edited it since,
only what install added is taken out and the rest of their edits stay.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from team_memory.hook.records import HOOKED_TOOLS
from team_memory_core.hook_protocol import SESSION_START

Scope = Literal["user", "project"]
SERVER_NAME = "team-memory"
HOOK_MODULE = "team_memory.hook"
CAPTURE_EVENTS = ("PostToolUse", "Stop", "SessionEnd")
# What `install claude-code` always installs (--prompts adds UserPromptSubmit).
INSTALLED_EVENTS = (SESSION_START, *CAPTURE_EVENTS)
# With --self-capture these hooks count the session's changes and ask Claude at Stop.
SELF_CAPTURE_EVENTS = frozenset(INSTALLED_EVENTS)
TOOL_MATCHER_EVENTS = frozenset({"PostToolUse"})
# Exact tool names ("A|B" is a list to Claude Code, not a regex): the hook starts only for the
# tools it summarises and for save_memory (the states of the files a memory cites).
TOOL_MATCHER = "|".join(HOOKED_TOOLS)
HOOK_TIMEOUT_S = {"SessionStart": 10, "PostToolUse": 5, "Stop": 5, "SessionEnd": 5,
                  "UserPromptSubmit": 5}
ENV_KEY_HEADER = "Bearer ${TEAM_MEMORY_API_KEY}"


class InstallError(RuntimeError):
    """Nothing was written."""


@dataclass(frozen=True)
class Paths:
    scope: Scope
    settings: Path
    mcp: Path

    @classmethod
    def for_scope(cls, scope: Scope, home: Path, project_dir: Path) -> Paths:
        if scope == "user":
            return cls(scope, home / ".claude" / "settings.json", home / ".claude.json")
        return cls(scope, project_dir / ".claude" / "settings.json", project_dir / ".mcp.json")


@dataclass
class Report:
    written: list[Path] = field(default_factory=list)
    restored: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def hook_command(event: str, server: str, data_dir: Path, python: str | None = None,
                 self_capture: bool = False) -> str:
    """The command a hook runs: the environment's Python on the stdlib-only hook module
    (``team-memory hook EVENT`` does the same, but the CLI's imports cost ~250 ms)."""
    mode = ["--capture", "claude"] if self_capture and event in SELF_CAPTURE_EVENTS else []
    return " ".join(shlex.quote(part) for part in (
        python or sys.executable, "-m", HOOK_MODULE, event, "--server", server,
        "--data-dir", str(data_dir), *mode))


def headers_helper_command(scope: Scope, data_dir: Path, python: str | None = None) -> str:
    """Claude Code runs this once per session, in the session's directory: it prints the
    project header (the identity the hooks use) and, in project scope, where the committed
    config holds no key, the Authorization header from the environment or the data dir."""
    auth = ["--auth", "key"] if scope == "project" else []
    return " ".join(shlex.quote(part) for part in (
        python or sys.executable, "-m", HOOK_MODULE, "headers", "--data-dir", str(data_dir),
        *auth))


def mcp_entry(scope: Scope, url: str, api_key: str | None,
              headers_helper: str) -> dict[str, Any]:
    header = ENV_KEY_HEADER if scope == "project" or api_key is None else f"Bearer {api_key}"
    return {"type": "http", "url": url, "headers": {"Authorization": header},
            "headersHelper": headers_helper}


def mcp_add_command(scope: Scope, entry: dict[str, Any]) -> str:
    """The command that registers ``entry`` by hand (`claude mcp add` has no headersHelper
    option; `add-json` takes the whole entry)."""
    return (f"claude mcp add-json --scope {scope} {SERVER_NAME} "
            f"{shlex.quote(json.dumps(entry))}")


# --- JSON files --------------------------------------------------------------------------------


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _parse(path: Path, raw: bytes | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise InstallError(f"{path} is not valid JSON ({error}); fix it first") from None
    if not isinstance(data, dict):
        raise InstallError(f"{path} does not hold a JSON object")
    return data


def _indent(raw: bytes | None) -> int:
    """Keep the file's indentation when we rewrite it (2 spaces when unknown)."""
    if raw:
        for line in raw.decode(errors="replace").splitlines()[1:]:
            stripped = line.lstrip(" ")
            if stripped and len(stripped) < len(line):
                return len(line) - len(stripped)
    return 2


def _dump(data: dict[str, Any], like: bytes | None) -> bytes:
    return (json.dumps(data, indent=_indent(like), ensure_ascii=False) + "\n").encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600 if path.name == \
        ".claude.json" else 0o644
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# --- editing ----------------------------------------------------------------------------------


def _is_ours(group: object) -> bool:
    hooks = group.get("hooks", []) if isinstance(group, dict) else []
    return any(isinstance(h, dict) and f" -m {HOOK_MODULE} " in str(h.get("command", ""))
               for h in hooks)


def add_hooks(settings: dict[str, Any], commands: dict[str, str]) -> dict[str, Any]:
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InstallError("the settings' \"hooks\" is not an object")
    for event, command in commands.items():
        group: dict[str, Any] = {"hooks": [{"type": "command", "command": command,
                                            "timeout": HOOK_TIMEOUT_S[event]}]}
        if event in TOOL_MATCHER_EVENTS:
            group = {"matcher": TOOL_MATCHER, **group}
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise InstallError(f"the settings' hooks.{event} is not a list")
        groups[:] = [g for g in groups if not _is_ours(g)] + [group]
    return settings


def remove_hooks(settings: dict[str, Any], events: list[str], had_hooks_key: bool) -> None:
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return
    for event in events:
        groups = hooks.get(event)
        if isinstance(groups, list):
            groups[:] = [g for g in groups if not _is_ours(g)]
            if not groups:
                del hooks[event]
    if not hooks and not had_hooks_key:
        del settings["hooks"]


def add_server(config: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    servers = config.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise InstallError("\"mcpServers\" is not an object")
    servers[SERVER_NAME] = entry
    return config


def remove_server(config: dict[str, Any], previous: dict[str, Any] | None,
                  had_servers_key: bool) -> None:
    servers = config.get("mcpServers")
    if not isinstance(servers, dict):
        return
    if previous is not None:
        servers[SERVER_NAME] = previous
    else:
        servers.pop(SERVER_NAME, None)
    if not servers and not had_servers_key:
        del config["mcpServers"]


# --- install / uninstall ----------------------------------------------------------------------


def manifest_path(manifest_dir: Path, paths: Paths) -> Path:
    digest = _digest(str(paths.settings.resolve()).encode())[:16]
    return manifest_dir / "claude-code" / f"install-{paths.scope}-{digest}.json"


@dataclass(frozen=True)
class _Planned:
    path: Path
    original: bytes | None
    new: bytes
    undo: dict[str, Any]


def _plan_settings(paths: Paths, commands: dict[str, str]) -> _Planned:
    raw = _read(paths.settings)
    data = _parse(paths.settings, raw)
    undo = {"kind": "hooks", "events": sorted(commands), "had_hooks_key": "hooks" in data}
    return _Planned(paths.settings, raw, _dump(add_hooks(data, commands), raw), undo)


def _plan_mcp(paths: Paths, entry: dict[str, Any]) -> _Planned:
    raw = _read(paths.mcp)
    data = _parse(paths.mcp, raw)
    servers = data.get("mcpServers")
    previous = servers.get(SERVER_NAME) if isinstance(servers, dict) else None
    undo = {"kind": "mcp", "previous": previous, "had_servers_key": "mcpServers" in data}
    return _Planned(paths.mcp, raw, _dump(add_server(data, entry), raw), undo)


def install(paths: Paths, manifest_dir: Path, *, commands: dict[str, str],
            entry: dict[str, Any], add_command: str) -> Report:
    """Plan every change first (nothing is written if any file is unreadable), then write."""
    manifest = manifest_path(manifest_dir, paths)
    report = Report()
    if manifest.exists():
        report.notes.append("an earlier installation was found and is replaced")
        uninstall(paths, manifest_dir)
    planned = [_plan_settings(paths, commands)]
    try:
        planned.append(_plan_mcp(paths, entry))
    except InstallError as error:
        report.notes.append(f"could not register the MCP server ({error}); run:\n  "
                            f"{add_command}")
    record = {"scope": paths.scope, "files": [
        {"path": str(p.path), "original": None if p.original is None
         else base64.b64encode(p.original).decode(), "written_sha256": _digest(p.new),
         "undo": p.undo, "parent_existed": p.path.parent.is_dir()} for p in planned]}
    manifest.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(manifest, json.dumps(record, indent=2).encode())
    for item in planned:
        _write_atomic(item.path, item.new)
        report.written.append(item.path)
    return report


def uninstall(paths: Paths, manifest_dir: Path) -> Report:
    manifest = manifest_path(manifest_dir, paths)
    report = Report()
    try:
        record = json.loads(manifest.read_text())
    except FileNotFoundError:
        report.notes.append(f"no Team Memory installation found for the {paths.scope} scope")
        return report
    for entry in record["files"]:
        _undo_file(Path(entry["path"]), entry, report)
    manifest.unlink()
    return report


def _undo_file(path: Path, entry: dict[str, Any], report: Report) -> None:
    current = _read(path)
    original = None if entry["original"] is None else base64.b64decode(entry["original"])
    if current is not None and _digest(current) == entry["written_sha256"]:
        if original is None:
            path.unlink()
            if not entry.get("parent_existed", True) and not any(path.parent.iterdir()):
                path.parent.rmdir()
            report.removed.append(path)
        else:
            _write_atomic(path, original)
            report.restored.append(path)
        return
    if current is None:
        return  # removed by someone else since: nothing of ours is left
    data = _parse(path, current)
    undo = entry["undo"]
    if undo["kind"] == "hooks":
        remove_hooks(data, undo["events"], undo["had_hooks_key"])
    else:
        remove_server(data, undo["previous"], undo["had_servers_key"])
    _write_atomic(path, _dump(data, current))
    report.restored.append(path)
    report.notes.append(f"{path} changed since install: removed only Team Memory's entries")


def hook_commands(events: list[str], command_for: Callable[[str], str]) -> dict[str, str]:
    return {event: command_for(event) for event in events}
