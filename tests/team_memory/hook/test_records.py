"""Event records: compact, never file contents, only for the tools worth distilling."""

from __future__ import annotations

import json

from team_memory.hook.records import SUMMARISED_TOOLS, event_record
from team_memory_core.hook_protocol import SUMMARY_MAX_CHARS
from tests.support.hooks import payload


def test_records_are_compact_and_never_carry_file_contents() -> None:
    for name in ("post_tool_use_edit.json", "post_tool_use_write.json",
                 "post_tool_use_bash.json"):
        record = event_record("PostToolUse", payload(name), "github.com/acme/shop")
        assert record is not None
        text = json.dumps(record)
        assert "MUST-NOT-LEAVE" not in text
        assert len(record["summary"]) <= SUMMARY_MAX_CHARS == 1200
        assert record["key"] == f"tool:{payload(name)['tool_use_id']}"
    edit = event_record("PostToolUse", payload("post_tool_use_edit.json"), "p")
    assert edit is not None and "uuid7" in edit["summary"]
    assert edit["files"] == ["/home/dev/shop/app/models/order.py"]
    write = event_record("PostToolUse", payload("post_tool_use_write.json"), "p")
    assert write is not None and write["summary"].endswith("(40 lines)")


def test_only_the_summarised_tools_are_sent() -> None:
    assert event_record("PostToolUse", payload("post_tool_use_read.json"), "p") is None
    bash = payload("post_tool_use_bash.json")
    for tool in ("mcp__team-memory__save_memory", "Grep", "WebFetch", "TodoWrite"):
        assert event_record("PostToolUse", {**bash, "tool_name": tool}, "p") is None
    for tool in SUMMARISED_TOOLS:
        assert event_record("PostToolUse", {**bash, "tool_name": tool}, "p") is not None


def test_an_event_without_a_session_id_is_not_sent() -> None:
    stop = {k: v for k, v in payload("stop.json").items() if k != "session_id"}
    assert event_record("Stop", stop, "p") is None
    assert event_record("Stop", {**stop, "session_id": ""}, "p") is None


def test_events_without_a_tool_use_id_get_distinct_keys() -> None:
    stop = payload("stop.json")
    first = event_record("Stop", stop, "p", now_ns=1)
    again = event_record("Stop", stop, "p", now_ns=2)
    assert first is not None and again is not None
    assert first["key"] != again["key"] and first["key"].startswith("stop:")
    assert first["summary"].startswith("Done. orders.id is now a UUID v7")
