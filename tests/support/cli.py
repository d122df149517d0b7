"""`team-memory ...` as an operator runs it: a real process against the test services."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import Stack


def cli(running: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`team-memory ...` as an operator runs it, against the test database."""
    env = {**os.environ, "DATABASE_URL": running.settings.database_url or "",
           "DATABASE_ADMIN_URL": running.settings.database_admin_url or "",
           "TEMPORAL_ADDRESS": running.settings.temporal_target,
           "TEAM_MEMORY_DATA_DIR": str(running.settings.data_dir),
           "TEAM_MEMORY_TASK_QUEUE": running.settings.task_queue}
    return subprocess.run([sys.executable, "-m", "team_memory", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
