"""What each Claude Code hook event does: capture events are sent (or spooled), SessionStart
asks the server for the context to inject, ``headers`` names the project for MCP calls."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from team_memory.hook import self_capture
from team_memory.hook.config import HookConfig
from team_memory.hook.records import event_record
from team_memory.hook.spool import has_spool, replay_in_background, spool
from team_memory.hook.transport import Delivery, post
from team_memory_core.hook_protocol import (
    CAPTURED_EVENTS,
    CONTEXT_ROUTE,
    EVENTS_ROUTE,
    HOOK_EVENTS,
    PROJECT_HEADER,
    SESSION_START,
)
from team_memory_core.project_identity import project_for

SEND_TIMEOUT_S = 1.0
CONTEXT_TIMEOUT_S = 2.0


def capture(config: HookConfig, event: str,
            payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(what became of the event: sent, spooled, rejected or skipped; the server's answer)."""
    project = project_for(str(payload.get("cwd") or os.getcwd()))
    record = event_record(event, payload, project)
    if record is None:
        return "skipped", {}
    outcome, answer = post(config, EVENTS_ROUTE, {"events": [record]}, SEND_TIMEOUT_S)
    if outcome == Delivery.UNREACHABLE:
        spool(config, [record])
        return "spooled", answer
    if outcome == Delivery.REJECTED:
        print(f"team-memory: event rejected: {answer.get('error')}", file=sys.stderr)
        return "rejected", answer
    if has_spool(config):
        replay_in_background(config)
    return "sent", answer


def capture_event(config: HookConfig, event: str, payload: dict[str, Any]) -> str:
    """Send the event; with self-capture, also keep the session's counters and, at Stop, ask
    Claude to save the turn's decisions (the hook's stdout, else empty)."""
    outcome, answer = capture(config, event, payload)
    if not config.self_capture:
        return ""
    session_id = payload.get("session_id")
    if event == "PostToolUse" and outcome != "skipped" and isinstance(session_id, str):
        self_capture.note_change(config.data_dir, session_id)
    elif event == "Stop" and outcome == "sent":  # not when the server cannot take the saves
        return self_capture.ask_on_stop(config.data_dir, payload,
                                        server_distills=bool(answer.get("capture"))) or ""
    elif event == "SessionEnd":
        self_capture.forget_session(config.data_dir, session_id)
    return ""


def session_context(config: HookConfig, payload: dict[str, Any]) -> str:
    project = project_for(str(payload.get("cwd") or os.getcwd()))
    body = {"session_id": str(payload.get("session_id") or ""), "project": project,
            "source": payload.get("source"), "self_capture": config.self_capture}
    outcome, answer = post(config, CONTEXT_ROUTE, body, CONTEXT_TIMEOUT_S)
    if outcome != Delivery.SENT:
        return (f"Team Memory ({project}): the server at {config.server} did not answer "
                f"({answer.get('error', 'unavailable')}); this session's events are kept "
                "locally and sent when it is back.")
    if has_spool(config):
        replay_in_background(config)
    return str(answer.get("context", ""))


def request_headers(config: HookConfig, cwd: str, with_key: bool) -> dict[str, str]:
    """What Claude Code's ``headersHelper`` prints for the MCP connection: the project this
    directory belongs to (the identity the hooks send) and, for project-scope installs whose
    committed config holds no key, the key from the environment or the data dir."""
    headers = {PROJECT_HEADER: project_for(cwd)}
    if with_key and config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return headers


def run(event: str, payload: dict[str, Any], config: HookConfig) -> str:
    """Handle one hook event; returns what to print on stdout (may be empty)."""
    if event == SESSION_START:
        return json.dumps({"hookSpecificOutput": {
            "hookEventName": SESSION_START,
            "additionalContext": session_context(config, payload)}})
    if event in CAPTURED_EVENTS:
        return capture_event(config, event, payload)
    raise ValueError(f"unknown hook event {event!r}; expected one of {', '.join(HOOK_EVENTS)}")
