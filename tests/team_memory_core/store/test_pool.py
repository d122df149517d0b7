"""The pool hands connections back without a reset statement: nothing a transaction does may
outlive it on its connection (team_memory_core/store/pool.py, ``_keep_session``)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from team_memory_core.store.pool import begin_scoped, beyond_member, create_pool, tenant_tx
from tests.conftest import Services

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("team_memory", "team_memory_core", "mcp_server", "workflows", "activities")

# What would outlive a transaction on its connection, and so reach the next borrower.
# A statement starts a text or follows a semicolon (an UPDATE's SET clause does neither); its
# keyword is in capitals, as every statement here writes it (prose says "set ... to" too).
_START = r"(?:\A|;)\s*"
SESSION_STATE = {
    "a session-level set_config": re.compile(r"set_config\((?:[^()]|\([^()]*\))*,\s*false\s*\)",
                                             re.IGNORECASE),
    "a SET that is not SET LOCAL": re.compile(_START + r"SET\s+(?!LOCAL\b)"),
    "a session advisory lock": re.compile(r"pg_(?:try_)?advisory_lock(?:_shared)?\(",
                                          re.IGNORECASE),
    "LISTEN": re.compile(_START + r"LISTEN\b"),
    "a cursor kept across transactions": re.compile(r"\bWITH\s+HOLD\b", re.IGNORECASE),
    "a temporary table": re.compile(r"\bCREATE\s+TEMP(?:ORARY)?\b", re.IGNORECASE),
    "a prepared statement by name": re.compile(_START + r"PREPARE\s+\w+"),
}


def statements_in(source: str) -> Iterator[str]:
    """Every string literal of a Python module (f-strings' literal parts joined)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.JoinedStr):
            yield "".join(part.value for part in node.values
                          if isinstance(part, ast.Constant) and isinstance(part.value, str))


def session_state(text: str) -> list[str]:
    return [what for what, pattern in SESSION_STATE.items() if pattern.search(text)]


def findings() -> list[str]:
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for text in statements_in(path.read_text()):
                found += [f"{path.relative_to(ROOT)}: {what}" for what in session_state(text)]
    # Functions the application calls run in its sessions (the migrations do not: they run
    # on a connection of their own, but a function they create may set session state).
    for path in sorted((ROOT / "sql").glob("*.sql")):
        found += [f"{path.relative_to(ROOT)}: {what}" for what in session_state(path.read_text())
                  if what == "a session-level set_config" or what == "a session advisory lock"]
    return found


def test_no_statement_leaves_session_state_behind() -> None:
    assert findings() == []


@pytest.mark.parametrize("statement", [
    "SELECT set_config('app.tenant_id', $1, false)",
    "SELECT set_config('app.projects', coalesce($2::text[]::text, ''), FALSE)",
    "SET app.tenant_id = '1'",
    "BEGIN;  SET SESSION statement_timeout TO 5",
    "SELECT pg_advisory_lock(42)",
    "LISTEN memories",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "CREATE TEMP TABLE t (x int)",
])
def test_the_scan_finds_session_state(statement: str) -> None:
    assert session_state(statement), statement


@pytest.mark.parametrize("statement", [
    "SELECT set_config('app.tenant_id', $1, true)",
    "SET LOCAL synchronous_commit TO off",
    "UPDATE memories SET status = 'active'",
    "UPDATE s\n        SET docs = s.docs + EXCLUDED.docs",
    "SELECT pg_advisory_xact_lock(7468207)",
])
def test_the_scan_lets_transaction_local_state_through(statement: str) -> None:
    assert session_state(statement) == [], statement


async def test_a_connection_comes_back_without_its_tenant(services: Services) -> None:
    pool: asyncpg.Pool = await create_pool(services.postgres.app_url, min_size=1, max_size=1)
    try:
        async with tenant_tx(pool, uuid4(), ["billing"]) as conn:
            assert await conn.fetchval("SELECT current_setting('app.projects')") == "{billing}"
            backend = await conn.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend  # the same one
            assert await conn.fetchval("SELECT current_tenant()") is None
            assert await conn.fetchval("SELECT current_projects()") is None
    finally:
        await pool.close()


async def test_the_scope_reads_back_exactly_with_quotes_and_backslashes(
        services: Services) -> None:
    """The scope travels as literals with the BEGIN: no project name can break out of it."""
    pool: asyncpg.Pool = await create_pool(services.postgres.app_url, min_size=1, max_size=1)
    names = ["it's", "back\\slash", "x'); SELECT set_config('app.tenant_id', '0', true); --"]
    tenant, member = uuid4(), uuid4()
    try:
        async with tenant_tx(pool, tenant, names, member) as conn:
            assert await conn.fetchval("SELECT current_projects()") == names
            assert await conn.fetchval("SELECT current_tenant()") == tenant
            assert await conn.fetchval("SELECT current_setting('app.member_id')") == str(member)
        async with tenant_tx(pool, tenant, []) as conn:
            assert await conn.fetchval("SELECT current_projects()") == []
    finally:
        await pool.close()


def test_a_nul_in_the_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        begin_scoped(uuid4(), ["a\0b"], None)


async def test_a_failed_transaction_is_rolled_back_and_the_connection_reused(
        services: Services) -> None:
    pool: asyncpg.Pool = await create_pool(services.postgres.app_url, min_size=1, max_size=1)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with tenant_tx(pool, uuid4()) as conn:
                backend = await conn.fetchval("SELECT pg_backend_pid()")
                await conn.execute("SELECT 1 / 0")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT current_tenant()") is None
    finally:
        await pool.close()


async def test_beyond_the_member_then_the_member_again(services: Services) -> None:
    """``beyond_member``: the tenant's whole view inside, the member back after; a statement
    failing inside rolls the transaction back with its own error."""
    pool: asyncpg.Pool = await create_pool(services.postgres.app_url, min_size=1, max_size=1)
    tenant, member = uuid4(), uuid4()
    try:
        async with tenant_tx(pool, tenant, member_id=member) as conn:
            async with beyond_member(conn, member):
                assert await conn.fetchval("SELECT current_member()") is None
                assert await conn.fetchval("SELECT current_tenant()") == tenant
            assert await conn.fetchval("SELECT current_member()") == member
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with tenant_tx(pool, tenant, member_id=member) as conn, \
                    beyond_member(conn, member):
                await conn.execute("SELECT 1 / 0")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
    finally:
        await pool.close()
