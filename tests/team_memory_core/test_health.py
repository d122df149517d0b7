"""The health rules /readyz and `team-memory status` share."""

from __future__ import annotations

from team_memory_core.health import WORKER_UNKNOWN, Check, healthy, ready


def test_a_probe_shows_no_error_message() -> None:
    failed = Check.failed(ConnectionRefusedError("connect to db.internal:5432 refused"))
    assert failed.detail == "error: ConnectionRefusedError: connect to db.internal:5432 refused"
    assert failed.probe == "error: ConnectionRefusedError"
    assert Check.passed("ok (127.0.0.1:7233)").probe == "ok"
    assert WORKER_UNKNOWN.probe == "unknown"


def test_ready_needs_every_part_and_healthy_only_no_failure() -> None:
    not_here = {"database": Check.passed(), "mcp server": Check.unknown("not running here")}
    assert healthy(not_here) and not ready(not_here)
    broken = {**not_here, "worker": Check(False, "error: no worker polling")}
    assert not healthy(broken) and not ready(broken)
    assert ready({"database": Check.passed(), "worker": Check(True, "ok: 1 poller(s): w")})
