"""The compact event record a hook sends for a Claude Code hook payload: the tool, the files it
touched and a short summary; never file contents."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from team_memory.hook.anchors import relative, repo_paths
from team_memory_core.hook_protocol import (
    ANCHOR_FILES_MAX,
    CAPTURED_EVENTS,
    FILES_MAX,
    KEY_MAX_CHARS,
    SAVE_TOOL,
    SESSION_ID_MAX_CHARS,
    SUMMARY_MAX_CHARS,
    EventKind,
)

# The tools whose use is worth distilling: the ones that change the repository. The installed
# PostToolUse matcher names exactly these and save_memory (whose cited files' states anchor
# the memory), so Claude Code starts no hook process for reads, searches or Team Memory's
# other tools (it waits for every hook before its next model request).
SUMMARISED_TOOLS = ("Bash", "Edit", "MultiEdit", "Write", "NotebookEdit")
EDITING_TOOLS = ("Edit", "MultiEdit", "Write", "NotebookEdit")
HOOKED_TOOLS = (*SUMMARISED_TOOLS, SAVE_TOOL)
_EXCERPT = 300


def _cut(value: object, limit: int = _EXCERPT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                            default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _files(tool_input: dict[str, Any], root: Path | None, cwd: str) -> list[str]:
    """The files a tool touched: repository-relative inside the repository (what anchors
    name, and no home directory in the record), as given outside it."""
    found = [tool_input[k] for k in ("file_path", "notebook_path", "path")
             if isinstance(tool_input.get(k), str)]
    if root is not None:
        found = [relative(root, cwd, path) or path for path in found]
    return found[:FILES_MAX]


def cited_files(tool_input: dict[str, Any]) -> list[str]:
    """The repository-relative files a save_memory call cites (invalid ones left out: the
    server refused that save)."""
    return repo_paths(tool_input.get("files"), ANCHOR_FILES_MAX)


def describe_tool(tool: str, tool_input: dict[str, Any], response: object,
                  files: list[str] | None = None) -> str:
    """A short summary of one tool call: what was done and how it ended; never file contents.
    ``files``: the files it touched as the record names them (repository-relative)."""
    if tool == "Bash":
        result = response if isinstance(response, dict) else {"stdout": response}
        out = _cut(result.get("stdout") or "", 240)
        err = _cut(result.get("stderr") or "", 160)
        flags = " (interrupted)" if result.get("interrupted") else ""
        summary = f"$ {_cut(tool_input.get('command', ''))}{flags}"
        return summary + (f"\nstdout: {out}" if out else "") + (f"\nstderr: {err}" if err else "")
    given = tool_input.get("notebook_path" if tool == "NotebookEdit" else "file_path", "")
    path = files[0] if files else given
    if tool in ("Edit", "MultiEdit"):
        edits = tool_input.get("edits") or [tool_input]
        changes = "; ".join(f"{_cut(e.get('old_string', ''), 120)!r} -> "
                            f"{_cut(e.get('new_string', ''), 160)!r}"
                            for e in edits[:3] if isinstance(e, dict))
        return f"edited {path}: {changes}"
    if tool == "Write":
        content = tool_input.get("content")
        lines = len(content.splitlines()) if isinstance(content, str) else 0
        return f"wrote {path} ({lines} lines)"
    # NotebookEdit, the last of SUMMARISED_TOOLS
    return f"edited notebook {path}"


def _summary(event: str, payload: dict[str, Any],
             root: Path | None) -> tuple[str | None, list[str], str] | None:
    """(tool, files, summary) of an event, or None when it is not worth sending."""
    if event == "PostToolUse":
        tool = str(payload.get("tool_name") or "")
        tool_input = payload.get("tool_input")
        tool_input = tool_input if isinstance(tool_input, dict) else {}
        if tool == SAVE_TOOL:  # only the states of the files it cites (events.py)
            files = cited_files(tool_input)
            return (tool, files, "") if files and root is not None else None
        if tool not in SUMMARISED_TOOLS:
            return None
        files = _files(tool_input, root, str(payload.get("cwd") or os.getcwd()))
        return tool, files, describe_tool(tool, tool_input, payload.get("tool_response"), files)
    if event == "UserPromptSubmit":
        return None, [], _cut(payload.get("prompt") or "", SUMMARY_MAX_CHARS)
    if event == "Stop":
        return None, [], _cut(payload.get("last_assistant_message") or "", SUMMARY_MAX_CHARS)
    return None, [], _cut(payload.get("reason") or "", 100)


def event_record(event: str, payload: dict[str, Any], project: str,
                 now_ns: int | None = None, root: Path | None = None) -> dict[str, Any] | None:
    """The record of one hook event (``root``: the repository the session runs in)."""
    session_id = payload.get("session_id")
    described = _summary(event, payload, root)
    if described is None or not isinstance(session_id, str) or not session_id:
        return None  # without a session id the event belongs to no session to distill
    tool, files, summary = described
    now_ns = now_ns or time.time_ns()
    kind = EventKind.FILES if tool == SAVE_TOOL else CAPTURED_EVENTS[event]
    natural = payload.get("tool_use_id")
    if isinstance(natural, str) and natural:
        key = f"{kind}:{natural}"
    else:
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                                + str(now_ns).encode()).hexdigest()[:32]
        key = f"{kind}:{digest}"
    return {"key": key[:KEY_MAX_CHARS], "session_id": session_id[:SESSION_ID_MAX_CHARS],
            "kind": kind.value, "project": project, "tool": tool, "files": files,
            "summary": summary, "at": timestamp(now_ns)}


def timestamp(now_ns: int | None = None) -> str:
    """An RFC 3339 UTC time with microseconds (the hook's clock orders file states)."""
    seconds, nanos = divmod(now_ns or time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"
