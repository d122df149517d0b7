"""`team-memory up` as a user runs it: one command, the whole stack, restartable."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import psutil
import pytest

from team_memory.embedded import free_port, port_is_free, temporal_binary
from tests.mcp_server.test_http import client_for
from tests.mcp_server.test_tools import call

_ENV_DROP = ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEAM_MEMORY_DATABASE_URL",
             "ANTHROPIC_API_KEY", "TEAM_MEMORY_ANTHROPIC_API_KEY")


@dataclass
class Ports:
    mcp: int
    temporal: int
    ui: int


def start_up(data_dir: Path, ports: Ports, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "team_memory", "up", "--data-dir", str(data_dir),
             "--mcp-port", str(ports.mcp), "--temporal-port", str(ports.temporal),
             "--temporal-ui-port", str(ports.ui)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )


def wait_ready(process: subprocess.Popen[bytes], ports: Ports, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        if "Team Memory is up." in log.read_text():
            try:
                ready = httpx.get(f"http://127.0.0.1:{ports.mcp}/readyz", timeout=2)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    raise AssertionError(f"up did not become ready:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(60)


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[tuple[Path, Ports, Path]]:
    ports = Ports(free_port(), free_port(), free_port())
    log = tmp_path / "up.log"
    yield tmp_path / "data", ports, log
    subprocess.run(["pkill", "-f", str(tmp_path / "data")], check=False)


async def save_and_wait(url: str, key: str, content: str) -> str:
    async with client_for(url, key) as client:
        saved = await call(client, "save_memory", content=content, category="architecture")
        with anyio.fail_after(30):
            while (await call(client, "memory_status", id=saved["id"]))["status"] != "active":
                await anyio.sleep(0.1)
    return str(saved["id"])


async def search_top(url: str, key: str, query: str) -> str:
    async with client_for(url, key) as client:
        found = await call(client, "search_memory", query=query, limit=1)
    return str(found["results"][0]["id"])


def temporal_server(data_dir: Path) -> psutil.Process:
    for process in psutil.process_iter(["cmdline"]):
        if str(data_dir / "temporal.db") in (process.info["cmdline"] or []):
            return process
    raise AssertionError("no Temporal dev server runs on this data dir")


def thread_nices(process: psutil.Process) -> set[int]:
    """The niceness of each of its threads (Linux schedules threads, not processes)."""
    return {psutil.Process(thread.id).nice() for thread in process.threads()}


def assert_ingestion_runs_behind(up: subprocess.Popen[bytes], data_dir: Path) -> None:
    """The worker and the Temporal server at the default background niceness, every thread;
    the MCP server at the normal priority, so saves and searches get the CPU first."""
    children = {("worker" if "worker" in child.cmdline() else "serve"): child
                for child in psutil.Process(up.pid).children()
                if {"worker", "serve"} & set(child.cmdline())}
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert thread_nices(children["worker"]) == {min(ours + 10, 19)}
    assert thread_nices(temporal_server(data_dir)) == {min(ours + 10, 19)}
    assert thread_nices(children["serve"]) == {ours}


def private(path: Path) -> bool:
    """Nothing for the group or others."""
    return path.stat().st_mode & 0o077 == 0


def assert_locked_down(data_dir: Path, ports: Ports) -> None:
    # As root, PostgreSQL runs as pgserver's own user, who must traverse it (embedded.lock_down).
    assert data_dir.stat().st_mode & 0o777 == (0o711 if os.geteuid() == 0 else 0o700)
    files = [data_dir / name for name in ("temporal.db", "temporal.log", "local-api-key",
                                          "temporal-kek")]
    files += list(data_dir.glob("temporal.db-*"))
    assert [path.name for path in files if not private(path)] == []
    cluster = data_dir / "pg"
    # The server's unix socket is 0777 like every PostgreSQL socket: the private cluster
    # directory it sits in is what keeps others from reaching it (local logins are trusted).
    assert [str(path) for path in [cluster, *cluster.rglob("*")]
            if not private(path) and not stat.S_ISSOCK(path.stat().st_mode)] == []
    server = temporal_server(data_dir)
    listening = {conn.laddr.ip for conn in server.net_connections(kind="inet")
                 if conn.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}, listening
    settings = httpx.get(f"http://127.0.0.1:{ports.ui}/api/v1/settings", timeout=10).json()
    assert settings["Codec"]["Endpoint"] == f"http://127.0.0.1:{ports.mcp}/codec"


def test_up_save_restart_and_find_again(stack_dir: tuple[Path, Ports, Path]) -> None:
    data_dir, ports, log = stack_dir
    # What an older version left: a data dir and a log anyone could read.
    data_dir.mkdir(mode=0o755)
    (data_dir / "temporal.log").write_text("")
    (data_dir / "temporal.log").chmod(0o644)
    first = start_up(data_dir, ports, log)
    try:
        wait_ready(first, ports, log)
        assert_locked_down(data_dir, ports)
        assert_ingestion_runs_behind(first, data_dir)
        # The dev server's workflow-state cache is bounded (embedded.DEV_SERVER_CONFIG).
        assert "history.hostLevelCacheMaxSize=512" in temporal_server(data_dir).cmdline()
        banner = log.read_text()
        key = (data_dir / "local-api-key").read_text().strip()
        assert f"http://127.0.0.1:{ports.mcp}/mcp" in banner
        assert f"http://127.0.0.1:{ports.ui}" in banner
        assert "./team-memory install claude-code" in banner
        assert key in banner
        url = f"http://127.0.0.1:{ports.mcp}/mcp"
        memory_id = anyio.run(save_and_wait, url, key,
                              "We picked PostgreSQL over MongoDB for transactional integrity")

        listing = subprocess.run(
            [str(temporal_binary()), "workflow", "list", "--address",
             f"127.0.0.1:{ports.temporal}", "--query", "WorkflowType='IngestMemory'"],
            capture_output=True, text=True, timeout=30, check=True)
        assert "Completed" in listing.stdout, listing.stdout
        assert "Dedupe policy     local (no ANTHROPIC_API_KEY" in banner
        schedules = subprocess.run(
            [str(temporal_binary()), "schedule", "list", "--address",
             f"127.0.0.1:{ports.temporal}"],
            capture_output=True, text=True, timeout=30, check=True)
        assert "consolidate/local/default" in schedules.stdout, schedules.stdout

        second = subprocess.run(
            [sys.executable, "-m", "team_memory", "up", "--data-dir", str(data_dir),
             "--mcp-port", str(free_port())],
            capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "already in use" in second.stderr
    finally:
        assert stop(first) == 0
    for port in (ports.mcp, ports.temporal, ports.ui):
        assert port_is_free(port), f"port {port} still taken after stop"

    again = start_up(data_dir, ports, log)
    try:
        wait_ready(again, ports, log)
        found = anyio.run(search_top, url, key, "Which database did we choose and why?")
        assert found == memory_id
    finally:
        assert stop(again) == 0
