"""Self-capture asks the session's Claude at Stop, bounded per session."""

from __future__ import annotations

from pathlib import Path

from team_memory.hook import self_capture


def test_self_capture_asks_at_most_max_asks_times_a_session(tmp_path: Path) -> None:
    stop = {"session_id": "s1"}
    answers = []
    for _ in range(self_capture.MAX_ASKS + 3):
        self_capture.note_change(tmp_path, "s1")
        answers.append(self_capture.ask_on_stop(tmp_path, stop, server_distills=False))
    assert sum(a is not None for a in answers) == self_capture.MAX_ASKS
    assert self_capture.ask_on_stop(tmp_path, {}, server_distills=False) is None
