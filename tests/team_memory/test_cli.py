"""Operator commands of the CLI that need no running stack: configuration and keys."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from tests.conftest import Stack
from tests.mcp_server.test_http import cli

pytestmark = pytest.mark.anyio


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


async def test_keys_created_with_an_expiry_list_it(stack: Stack) -> None:
    tenant = stack.principal.tenant_name
    at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    made = [await anyio.to_thread.run_sync(cli, stack, "key", "create", "--tenant", tenant,
                                           *option)
            for option in (["--expires-in", "90d"], ["--expires-at", at.isoformat()])]
    listed = await anyio.to_thread.run_sync(cli, stack, "key", "list", "--tenant", tenant)
    assert all(done.returncode == 0 for done in made), [done.stderr for done in made]
    ninety = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%d")
    assert f"expires {ninety}" in made[0].stdout
    states = [line.split("  ")[-1] for line in listed.stdout.splitlines()]
    assert states[0] == "active"  # the fixture's key
    assert states[1].startswith(f"active, expires {ninety}")
    assert states[2] == f"active, expires {at:%Y-%m-%d %H:%M}"


@pytest.mark.parametrize(("options", "message"), [
    (["--expires-in", "soon"], "is not a duration"),
    (["--expires-in", "0d"], "is not a duration"),
    (["--expires-at", "2001-01-01T00:00:00Z"], "is in the past"),
    (["--expires-at", "next tuesday"], "is not an ISO 8601 time"),
    (["--expires-in", "1d", "--expires-at", "2999-01-01"], "not both"),
])
async def test_a_bad_expiry_is_refused_and_creates_no_key(
    stack: Stack, options: list[str], message: str
) -> None:
    tenant = stack.principal.tenant_name
    refused = await anyio.to_thread.run_sync(cli, stack, "key", "create", "--tenant", tenant,
                                             *options)
    listed = await anyio.to_thread.run_sync(cli, stack, "key", "list", "--tenant", tenant)
    assert refused.returncode == 2 and message in refused.stderr
    assert len(listed.stdout.splitlines()) == 1
