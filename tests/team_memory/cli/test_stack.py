"""`team-memory config` and the commands that run the stack."""

from __future__ import annotations

import os
import subprocess
import sys


def test_config_masks_every_password() -> None:
    env = {**os.environ,
           "DATABASE_URL": "postgresql://team_memory_app:app-secret-1@db:5432/tm",
           "DATABASE_ADMIN_URL": "postgresql://owner:owner-secret-2@db/tm?sslmode=require"
                                 "&password=owner-secret-3",
           "ANTHROPIC_API_KEY": "sk-ant-secret-4"}
    shown = subprocess.run([sys.executable, "-m", "team_memory", "config"], env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    for secret in ("app-secret-1", "owner-secret-2", "owner-secret-3", "sk-ant-secret-4"):
        assert secret not in shown
    assert "DATABASE_ADMIN_URL=postgresql://owner:****@db/tm?sslmode=require&password=****" \
        in shown.splitlines()
    assert "ANTHROPIC_API_KEY=****" in shown.splitlines()
    assert "TEAM_MEMORY_KEYWORD_CANDIDATE_ROWS=1000" in shown.splitlines()  # not a secret
