"""The spool: what the server could not take is kept, redacted, until a replay delivers it."""

from __future__ import annotations

import json
from pathlib import Path

from team_memory.hook.events import capture
from team_memory.hook.records import event_record
from team_memory.hook.spool import replay, spool
from tests.support.hooks import down, payload


def test_server_down_spools_redacted_records(tmp_path: Path) -> None:
    config = down(tmp_path)
    assert capture(config, "PostToolUse", payload("post_tool_use_bash.json", tmp_path))[0] \
        == "spooled"
    assert capture(config, "Stop", payload("stop.json", tmp_path))[0] == "spooled"
    lines = config.spool.read_text().splitlines()
    assert len(lines) == 2
    assert "sk-ant-api03" not in config.spool.read_text()
    assert "[REDACTED:" in json.loads(lines[0])["summary"]
    assert config.spool.stat().st_mode & 0o777 == 0o600


def test_replay_keeps_what_it_cannot_deliver(tmp_path: Path) -> None:
    config = down(tmp_path)
    record = event_record("Stop", payload("stop.json"), "p")
    assert record is not None
    spool(config, [record, record])
    assert replay(config) == 0
    claimed = list(config.data_dir.glob("hook-spool.jsonl.*.replaying"))
    assert len(claimed) == 1 and len(claimed[0].read_text().splitlines()) == 2
    spool(config, [record])  # new events go to a fresh spool meanwhile
    assert len(config.spool.read_text().splitlines()) == 1
