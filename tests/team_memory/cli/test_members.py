"""Members: `team-memory member add/list`, keys that belong to a member, the members existing
keys migrate to, and the local member `up` creates."""

from __future__ import annotations

from pathlib import Path

import anyio
import asyncpg
import pytest

from team_memory.stack import LOCAL_TENANT, _prepare_database
from team_memory_core.store.migrate import migrate
from team_memory_core.store.pool import create_pool
from team_memory_core.store.tenants import authenticate_key
from team_memory_core.tenants import authenticate, hash_key, local_member_name
from tests.conftest import Services, Stack
from tests.support.cli import cli
from tests.support.scratch import database_at

pytestmark = pytest.mark.anyio


async def test_members_get_keys_and_a_key_says_whose_it_is(stack: Stack) -> None:
    tenant = stack.principal.tenant_name

    def run(*args: str) -> tuple[int, str, str]:
        done = cli(stack, *args)
        return done.returncode, done.stdout, done.stderr

    async def run_async(*args: str) -> tuple[int, str, str]:
        return await anyio.to_thread.run_sync(lambda: run(*args))

    added = await run_async("member", "add", "--tenant", tenant, "Alice Smith")
    again = await run_async("member", "add", "--tenant", tenant, "Alice Smith")
    bad_name = await run_async("member", "add", "--tenant", tenant, "-dash first")
    made = await run_async("key", "create", "--tenant", tenant, "--member", "Alice Smith",
                           "--name", "alice-laptop")
    unknown = await run_async("key", "create", "--tenant", tenant, "--member", "nobody")
    members = await run_async("member", "list", "--tenant", tenant)
    keys = await run_async("key", "list", "--tenant", tenant)
    assert added[0] == 0 and "member Alice Smith" in added[1]
    assert again[0] == 1 and "has a member named 'Alice Smith' already" in again[2]
    assert bad_name[0] != 0
    assert made[0] == 0 and "member Alice Smith" in made[1], made
    assert unknown[0] == 1 and "no member named 'nobody'" in unknown[2]
    # The fixture's key belongs to the member named after it ("default").
    listed = [line.split("  ")[1:] for line in members[1].splitlines()]
    assert listed == [["Alice Smith", "1 active key"], ["default", "1 active key"]]
    key_lines = keys[1].splitlines()
    assert len(key_lines) == 2  # the refused key was not created
    assert "alice-laptop  member Alice Smith  all projects" in key_lines[1]

    secret = next(line.split()[1] for line in made[1].splitlines()
                  if line.startswith("secret "))
    principal = await authenticate(stack.pool, secret)
    assert principal is not None and principal.member_name == "Alice Smith"
    own = await authenticate(stack.pool, stack.api_key)
    assert own is not None and own.member_name == "default"
    assert own.member_id != principal.member_id and own.member_id == stack.principal.member_id


async def test_existing_keys_migrate_to_members_named_after_them(services: Services) -> None:
    async with database_at(services, 13) as url:
        conn = await asyncpg.connect(url)
        try:
            tenant = await conn.fetchval(
                "INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'acme') RETURNING id")
            keys = {}
            for name, prefix in (("alice", "tm_aaaaa"), ("default", "tm_bbbbb"),
                                 ("default", "tm_ccccc"), (" ", "tm_ddddd")):
                keys[prefix] = await conn.fetchval(
                    "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash)"
                    " VALUES (gen_random_uuid(), $1, $2, $3, $4) RETURNING id",
                    tenant, name, prefix, hash_key(prefix))
            await migrate(url, services.settings())
            rows = await conn.fetch(
                "SELECT k.prefix, k.member_id = k.id AS same_id, m.name FROM api_keys k"
                " JOIN members m ON m.id = k.member_id ORDER BY k.prefix")
        finally:
            await conn.close()
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as app:
                owner = await authenticate_key(app, hash_key("tm_aaaaa"))
        finally:
            await pool.close()
    assert [(r["prefix"], r["same_id"], r["name"]) for r in rows] == [
        ("tm_aaaaa", True, "alice"), ("tm_bbbbb", True, "default"),
        ("tm_ccccc", True, "default (tm_ccccc)"), ("tm_ddddd", True, "key")]
    assert owner is not None and (owner.member_id, owner.member_name) == (keys["tm_aaaaa"],
                                                                          "alice")


async def test_up_gives_the_local_key_the_local_member(services: Services,
                                                       tmp_path: Path) -> None:
    async with database_at(services, 0) as url:
        settings = services.settings(data_dir=tmp_path)
        secret = await _prepare_database(settings, url)
        again = await _prepare_database(settings, url)  # the key file's key is kept
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            principal = await authenticate(pool, secret)
        finally:
            await pool.close()
    assert again == secret
    assert principal is not None and principal.tenant_name == LOCAL_TENANT
    assert principal.member_name == local_member_name()


async def test_existing_memories_get_their_author_and_origin(services: Services) -> None:
    """sql/017: the key that saved a memory is its author (the key became a member of the
    same id); a captured memory's source names its session; a merged one is a merge."""
    async with database_at(services, 14) as url:
        conn = await asyncpg.connect(url)
        try:
            tenant = await conn.fetchval(
                "INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'acme') RETURNING id")
            key = await conn.fetchval(
                "INSERT INTO members (id, tenant_id, name) VALUES (gen_random_uuid(), $1,"
                " 'alice') RETURNING id", tenant)
            rows = {}
            for name, created_by, source, merged in (
                    ("saved", key, None, []), ("captured", key, "claude-code:sess-1", []),
                    ("merged", key, None, [key]), ("operator", None, "wiki", [])):
                rows[name] = await conn.fetchval(
                    "INSERT INTO memories (id, tenant_id, project, content, category,"
                    " content_hash, created_by, source, merged_from, status)"
                    " VALUES (gen_random_uuid(), $1, 'default', $2, 'general', $2, $3, $4,"
                    " $5, 'active') RETURNING id", tenant, name, created_by, source, merged)
            await migrate(url, services.settings())
            found = {r["content"]: (r["author_id"], r["origin"], r["origin_session"],
                                    r["private_to"])
                     for r in await conn.fetch("SELECT * FROM memories")}
        finally:
            await conn.close()
    assert found == {"saved": (key, "tool", None, None),
                     "captured": (key, "capture", "sess-1", None),
                     "merged": (key, "merge", None, None),
                     "operator": (None, "tool", None, None)}
