"""The compact event record a hook sends for a Claude Code hook payload: the tool, the files it
touched and a short summary; never file contents."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from team_memory_core.hook_protocol import (
    CAPTURED_EVENTS,
    FILES_MAX,
    KEY_MAX_CHARS,
    SESSION_ID_MAX_CHARS,
    SUMMARY_MAX_CHARS,
)

# The tools whose use is worth distilling: the ones that change the repository. The installed
# PostToolUse matcher names exactly these, so Claude Code starts no hook process for reads,
# searches or Team Memory's own tools (it waits for every hook before its next model request).
SUMMARISED_TOOLS = ("Bash", "Edit", "MultiEdit", "Write", "NotebookEdit")
_EXCERPT = 300


def _cut(value: object, limit: int = _EXCERPT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                            default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _files(tool_input: dict[str, Any]) -> list[str]:
    found = [tool_input[k] for k in ("file_path", "notebook_path", "path")
             if isinstance(tool_input.get(k), str)]
    return found[:FILES_MAX]


def describe_tool(tool: str, tool_input: dict[str, Any], response: object) -> str:
    """A short summary of one tool call: what was done and how it ended; never file contents."""
    if tool == "Bash":
        result = response if isinstance(response, dict) else {"stdout": response}
        out = _cut(result.get("stdout") or "", 240)
        err = _cut(result.get("stderr") or "", 160)
        flags = " (interrupted)" if result.get("interrupted") else ""
        summary = f"$ {_cut(tool_input.get('command', ''))}{flags}"
        return summary + (f"\nstdout: {out}" if out else "") + (f"\nstderr: {err}" if err else "")
    if tool in ("Edit", "MultiEdit"):
        edits = tool_input.get("edits") or [tool_input]
        changes = "; ".join(f"{_cut(e.get('old_string', ''), 120)!r} -> "
                            f"{_cut(e.get('new_string', ''), 160)!r}"
                            for e in edits[:3] if isinstance(e, dict))
        return f"edited {tool_input.get('file_path', '')}: {changes}"
    if tool == "Write":
        content = tool_input.get("content")
        lines = len(content.splitlines()) if isinstance(content, str) else 0
        return f"wrote {tool_input.get('file_path', '')} ({lines} lines)"
    # NotebookEdit, the last of SUMMARISED_TOOLS
    return f"edited notebook {tool_input.get('notebook_path', '')}"


def _summary(event: str, payload: dict[str, Any]) -> tuple[str | None, list[str], str] | None:
    """(tool, files, summary) of an event, or None when it is not worth sending."""
    if event == "PostToolUse":
        tool = str(payload.get("tool_name") or "")
        if tool not in SUMMARISED_TOOLS:
            return None
        tool_input = payload.get("tool_input")
        tool_input = tool_input if isinstance(tool_input, dict) else {}
        return tool, _files(tool_input), describe_tool(tool, tool_input,
                                                       payload.get("tool_response"))
    if event == "UserPromptSubmit":
        return None, [], _cut(payload.get("prompt") or "", SUMMARY_MAX_CHARS)
    if event == "Stop":
        return None, [], _cut(payload.get("last_assistant_message") or "", SUMMARY_MAX_CHARS)
    return None, [], _cut(payload.get("reason") or "", 100)


def event_record(event: str, payload: dict[str, Any], project: str,
                 now_ns: int | None = None) -> dict[str, Any] | None:
    session_id = payload.get("session_id")
    described = _summary(event, payload)
    if described is None or not isinstance(session_id, str) or not session_id:
        return None  # without a session id the event belongs to no session to distill
    tool, files, summary = described
    now_ns = now_ns or time.time_ns()
    kind = CAPTURED_EVENTS[event]
    natural = payload.get("tool_use_id")
    if isinstance(natural, str) and natural:
        key = f"{kind}:{natural}"
    else:
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                                + str(now_ns).encode()).hexdigest()[:32]
        key = f"{kind}:{digest}"
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"
    return {"key": key[:KEY_MAX_CHARS], "session_id": session_id[:SESSION_ID_MAX_CHARS],
            "kind": kind.value, "project": project, "tool": tool, "files": files,
            "summary": summary, "at": at}
