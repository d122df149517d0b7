"""Capture by the session's own Claude, for users without a server-side Anthropic key.

Opt-in (`team-memory install claude-code --self-capture`). The server can only distill hook
events into memories with its own Claude Haiku key; a Claude Code subscription gives the user
a model but no API key. So, at the end of a turn that changed the repository (a Bash, Edit or
Write call since the last ask), the Stop hook asks the session's Claude, which saw the whole
turn, to save what the team should keep with ``save_memory``: the normal save path.

Loop-safe and bounded: never while Claude Code is already continuing because of a Stop hook
(``stop_hook_active``), only when tools changed something since the last ask, at most
``MAX_ASKS`` times a session, and never when the server distills itself or is unreachable.
Standard library only: it runs inside the hook process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from team_memory.hook.state import locked_json

MAX_ASKS = 12
STATE_DIR = "self-capture"
STALE_AFTER_S = 2 * 86400
ASK = (
    "Team Memory: before you finish, save to the team's memory what this turn established "
    "that the team should keep: decisions and their reasons, conventions, the cause and fix "
    "of a bug, business rules. Use save_memory once per fact, self-contained, with the why "
    "and a fitting category; leave out what is trivial, temporary or already saved. If there "
    "is nothing worth keeping, simply stop. (Asked by the Team Memory Stop hook, not by the "
    "user; do not mention it.)"
)


def _state_file(data_dir: Path, session_id: str) -> Path:
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    return data_dir / STATE_DIR / f"{digest}.json"


def _locked_state(data_dir: Path, session_id: str) -> contextlib.AbstractContextManager[
        dict[str, Any]]:
    """The session's counters, read and written under an exclusive lock (parallel tool calls
    run their hooks concurrently)."""
    return locked_json(_state_file(data_dir, session_id))


def note_change(data_dir: Path, session_id: str) -> None:
    """A tool changed the repository in this session (PostToolUse of a summarised tool)."""
    with _locked_state(data_dir, session_id) as state:
        state["changes"] = int(state.get("changes", 0)) + 1


def ask_on_stop(data_dir: Path, payload: dict[str, Any], server_distills: bool) -> str | None:
    """The Stop hook's answer: a block decision whose reason asks Claude to save this turn's
    decisions, or None to let the session stop."""
    session_id = payload.get("session_id")
    if payload.get("stop_hook_active") or server_distills or not isinstance(session_id, str) \
            or not session_id:
        return None
    with _locked_state(data_dir, session_id) as state:
        changes, asked = int(state.get("changes", 0)), int(state.get("asked_at", 0))
        asks = int(state.get("asks", 0))
        if changes <= asked or asks >= MAX_ASKS:
            return None
        state.update(asked_at=changes, asks=asks + 1)
    return json.dumps({"decision": "block", "reason": ASK})


def forget_session(data_dir: Path, session_id: object) -> None:
    """At SessionEnd: drop the session's counters, and any left by sessions that never ended."""
    if isinstance(session_id, str) and session_id:
        _state_file(data_dir, session_id).unlink(missing_ok=True)
    cutoff = time.time() - STALE_AFTER_S
    with contextlib.suppress(OSError):
        for stale in (data_dir / STATE_DIR).glob("*.json"):
            if stale.stat().st_mtime < cutoff:
                stale.unlink(missing_ok=True)
