"""A test's own Temporal dev server: a first start that fails is retried on a new port, and a
start that fails says how the server's log ends."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from team_memory.embedded import StackError
from tests.support.faults import DedicatedTemporal


def test_a_failed_start_says_how_the_log_ends(tmp_path: Path) -> None:
    server = DedicatedTemporal(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.port))
        taken.listen()
        (tmp_path / "temporal.log").write_text("first line\nthe server's last words\n")
        with pytest.raises(StackError, match=r"(?s)in use.*its log ends:.*last words"):
            server.start()
    server.stop()


def test_a_first_start_that_fails_is_retried_on_a_new_port(tmp_path: Path) -> None:
    server = DedicatedTemporal(tmp_path)
    taken_port = server.port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", taken_port))
        taken.listen()
        with pytest.warns(UserWarning, match="retrying on a new port"):
            server.start_first()
    try:
        assert server.port != taken_port
        with socket.create_connection(("127.0.0.1", server.port), 2):
            pass  # serving
    finally:
        server.stop()

