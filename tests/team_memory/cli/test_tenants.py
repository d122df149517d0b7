"""`team-memory tenant` and `key`: keys with an expiry, and bad expiries refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from tests.conftest import Stack
from tests.support.cli import cli

pytestmark = pytest.mark.anyio


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
