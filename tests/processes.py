"""Run `python -m team_memory serve|worker` as real child processes against the test services."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from team_memory import embedded
from team_memory_core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


# Children run at the suite's priority: `up` lowers the worker and Temporal by default
# (TEAM_MEMORY_BACKGROUND_NICE), which on a machine busy with the suite's parallel workers can
# starve a test's worker for minutes. tests/team_memory/test_stack.py checks the default.
AT_SUITE_PRIORITY = {"TEAM_MEMORY_BACKGROUND_NICE": "0"}


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment `up` gives its children, for ``settings`` (no ambient OTEL_/LLM config)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "TEAM_MEMORY_", "ANTHROPIC_"))
           and k not in ("DATABASE_URL", "DATABASE_ADMIN_URL", "TEMPORAL_ADDRESS")}
    assert settings.database_url is not None and settings.temporal_address is not None
    env.update({
        "DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TEAM_MEMORY_TASK_QUEUE": settings.task_queue,
        "TEAM_MEMORY_DATA_DIR": str(settings.data_dir),
        "TEAM_MEMORY_MCP_PORT": str(settings.mcp_port),
        "TEAM_MEMORY_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **AT_SUITE_PRIORITY,
    })
    env.update(extra)
    return env


@contextlib.contextmanager
def team_memory(*args: str, env: dict[str, str],
                output: IO[bytes] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``output``: where the process's stdout and stderr go (default: the test's own)."""
    process = subprocess.Popen([sys.executable, "-m", "team_memory", *args], env=env, cwd=ROOT,
                               stdout=output, stderr=None if output is None else subprocess.STDOUT)
    try:
        yield process
    finally:
        embedded.stop_process(process, 30)


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until /readyz answers 200 (database, Temporal and a live worker)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"{base_url}/readyz", timeout=3)
            if response.status_code == 200:
                return
            last = response.text
        time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout}s: {last}")
