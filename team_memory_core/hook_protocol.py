"""What the Claude Code hook and the server agree on: routes, event kinds, field limits, the
project header, and where a local installation keeps the hook's files.

Standard library only: the hook process (``python -m team_memory.hook``) imports it on every
Claude Code event, and must not pay for pydantic or the server's imports.
"""

from __future__ import annotations

import os
import posixpath
from enum import StrEnum
from pathlib import Path

EVENTS_ROUTE = "/hooks/events"
CONTEXT_ROUTE = "/hooks/context"

# The header a client sends to name the project it works in (Claude Code's headersHelper
# prints it from project_identity.project_for, so hook and MCP calls agree).
PROJECT_HEADER = "X-Team-Memory-Project"


class EventKind(StrEnum):
    TOOL = "tool"  # PostToolUse
    PROMPT = "prompt"  # UserPromptSubmit
    STOP = "stop"  # Stop: the end of a turn; flushes the batch
    SESSION_END = "session_end"  # SessionEnd: flushes and ends the session workflow
    FILES = "files"  # file states only (after a save_memory call): nothing to distill


SESSION_START = "SessionStart"
# Claude Code's hook events that capture, by the kind of event record they send.
CAPTURED_EVENTS = {"PostToolUse": EventKind.TOOL, "UserPromptSubmit": EventKind.PROMPT,
                   "Stop": EventKind.STOP, "SessionEnd": EventKind.SESSION_END}
HOOK_EVENTS = (SESSION_START, *CAPTURED_EVENTS)

# Field limits of an event record. The hook cuts to them; the server refuses what exceeds
# them, except the summary, which it takes up to SUMMARY_RECEIVED_MAX_CHARS and cuts to
# SUMMARY_MAX_CHARS after redaction (a redaction marker can be longer than the secret).
KEY_MAX_CHARS = 200
SESSION_ID_MAX_CHARS = 200
PROJECT_MAX_CHARS = 200
TOOL_MAX_CHARS = 100
FILES_MAX = 20
FILE_MAX_CHARS = 300
SUMMARY_MAX_CHARS = 1200
SUMMARY_RECEIVED_MAX_CHARS = 4 * SUMMARY_MAX_CHARS
EVENTS_PER_REQUEST_MAX = 500
SOURCE_MAX_CHARS = 40  # the SessionStart source (startup, resume, clear, compact)
BODY_MAX_BYTES = 4_000_000

# Anchors (docs/freshness.md): the files a memory cites, by repository-relative path, and
# the file states (git blob hashes, never contents) the hook reports.
ANCHOR_FILES_MAX = 10  # files one memory may cite
STATES_MAX = 500  # file states in one event record or context request
ANCHOR_CACHE_MAX = STATES_MAX  # anchored paths of a project the hook keeps and re-checks
CHECK_MAX = 64  # files of the session context's memories the server asks the hook to hash
BLOB_MAX_BYTES = 32 << 20  # larger files are not hashed (their state is not reported)
SAVE_TOOL = "mcp__team-memory__save_memory"  # the MCP tool as Claude Code names it


def repo_path(raw: str) -> str:
    """``raw`` as a normalized repository-relative path (``src/a.py``); ValueError when it
    is empty, absolute, leaves the repository or holds control characters."""
    path = raw.strip()
    if not path or len(path) > FILE_MAX_CHARS:
        raise ValueError(f"a file path must be 1-{FILE_MAX_CHARS} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValueError("a file path must not hold control characters")
    if path.startswith(("/", "~")) or (len(path) > 1 and path[1] == ":"):
        raise ValueError("a file path must be relative to the repository root (src/a.py), "
                         "not absolute")
    normal = posixpath.normpath(path)
    if normal == "." or normal == ".." or normal.startswith("../"):
        raise ValueError("a file path must name a file inside the repository")
    return normal


# The local installation's files in the data directory.
LOCAL_KEY_FILE = "local-api-key"
SPOOL_FILE = "hook-spool.jsonl"


def default_data_dir() -> Path:
    """Per-user data directory: $XDG_DATA_HOME/team-memory, else ~/.local/share/team-memory."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "team-memory"
