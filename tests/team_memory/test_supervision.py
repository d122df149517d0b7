"""`up` supervises: kill -9 of any of its children is followed by a restart, the service
answers again within 15 s, nothing acknowledged is lost, and `status` shows the restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import psutil
import pytest

from team_memory.supervisor import STATE_FILE, Child, CrashLoop, Supervisor
from tests.mcp_server.test_http import client_for
from tests.mcp_server.test_tools import call
from tests.team_memory.test_stack import Ports, stack_dir, start_up, stop, temporal_server
from tests.team_memory.test_stack import wait_ready as wait_up

__all__ = ["stack_dir"]  # the fixture, used by name

RECOVERY_S = 15  # the bound for a child restarted under `up`


def _child(up: subprocess.Popen[bytes], argument: str) -> psutil.Process:
    for process in psutil.Process(up.pid).children():
        if argument in process.cmdline():
            return process
    raise AssertionError(f"no child of up runs {argument}")


def _postmaster(data_dir: Path) -> psutil.Process:
    return psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))


def _answers(ports: Ports, key: str, text: str) -> str | None:
    """The id of a save acknowledged and found by search, through the MCP server."""
    async def round_trip() -> str | None:
        url = f"http://127.0.0.1:{ports.mcp}/mcp"
        with anyio.fail_after(10):
            async with client_for(url, key) as client:
                saved = await call(client, "save_memory", content=text)
                found = await call(client, "search_memory", query=text, limit=5)
        found_ids = [hit["id"] for hit in found["results"]]
        return str(saved["id"]) if saved["id"] in found_ids else None

    try:
        return anyio.run(round_trip)
    except Exception:  # down or half up: not answering yet
        return None


def _ready(ports: Ports) -> bool:
    """/readyz: PostgreSQL and Temporal answer and a live worker serves the queue."""
    try:
        return httpx.get(f"http://127.0.0.1:{ports.mcp}/readyz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _still_pending(ports: Ports, key: str, ids: list[str]) -> list[str]:
    """Those of ``ids`` not committed yet. Each is asked until it is, no more: the key's rate
    limit (120 calls a minute) holds for the test's polling too."""
    async def check() -> list[str]:
        async with client_for(f"http://127.0.0.1:{ports.mcp}/mcp", key) as client:
            return [memory_id for memory_id in ids
                    if (await call(client, "memory_status", id=memory_id))["status"] != "active"]

    return anyio.run(check)


@pytest.mark.alone
def test_a_killed_child_is_restarted_and_nothing_is_lost(
    stack_dir: tuple[Path, Ports, Path],
) -> None:
    data_dir, ports, log = stack_dir
    up = start_up(data_dir, ports, log)
    try:
        wait_up(up, ports, log)
        key = (data_dir / "local-api-key").read_text().strip()
        victims: dict[str, Callable[[], psutil.Process]] = {
            "the worker": lambda: _child(up, "worker"),
            "the MCP server": lambda: _child(up, "serve"),
            "the Temporal server": lambda: temporal_server(data_dir),
            "PostgreSQL": lambda: _postmaster(data_dir),
        }
        acknowledged: list[str] = []
        for name, victim in victims.items():
            text = f"Before {name} was killed, deploys moved to Wednesdays ({len(acknowledged)})"
            saved = _answers(ports, key, text)
            assert saved is not None
            acknowledged.append(saved)
            victim().send_signal(signal.SIGKILL)
            killed = time.monotonic()
            recovered = False
            while not recovered and time.monotonic() - killed < RECOVERY_S:
                time.sleep(1)  # two calls a second: within the key's rate limit
                recovered = f"{name} restarted" in log.read_text() and _ready(ports) \
                    and _answers(ports, key, f"After {name} came back ({time.time()})") is not None
            assert recovered, f"not answering {RECOVERY_S} s after {name} was killed:\n" \
                              f"{log.read_text()[-3000:]}"
            assert up.poll() is None, log.read_text()
        deadline = time.monotonic() + 60
        pending = _still_pending(ports, key, acknowledged)
        while pending:
            assert time.monotonic() < deadline, f"acknowledged memories never committed: {pending}"
            time.sleep(1)
            pending = _still_pending(ports, key, pending)
        status = subprocess.run([sys.executable, "-m", "team_memory", "status"],
                                env={**os.environ, "TEAM_MEMORY_DATA_DIR": str(data_dir),
                                     "TEAM_MEMORY_MCP_PORT": str(ports.mcp),
                                     "TEAM_MEMORY_TEMPORAL_PORT": str(ports.temporal)},
                                capture_output=True, text=True, timeout=120, check=False)
        for name in victims:
            assert f"{name}" in status.stdout and "restarted 1 time(s)" in status.stdout, \
                status.stdout
        assert httpx.get(f"http://127.0.0.1:{ports.mcp}/readyz", timeout=10).status_code == 200
    finally:
        assert stop(up) == 0, log.read_text()
    assert (data_dir / STATE_FILE).exists()


class _Dies:
    """A child that exits at once, every time it is started."""

    def poll(self) -> int | None:
        return 3


def test_a_crash_loop_gives_up_with_a_clear_message(tmp_path: Path) -> None:
    now = [0.0]
    child = Child("the worker", _Dies, _Dies())
    supervisor = Supervisor([child], tmp_path / STATE_FILE, clock=lambda: now[0])
    with pytest.raises(CrashLoop, match=r"the worker keeps exiting .* last exit code 3"):
        for _ in range(100):
            supervisor.check()
            now[0] += 1.0
    assert child.restarts == 5
    assert now[0] < 60  # five restarts within the window, with backoff between them
