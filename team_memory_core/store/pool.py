"""The PostgreSQL pool and the tenant-scoped transaction every query runs in."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from uuid import UUID

import asyncpg
from asyncpg.connection import LoggedQuery
from pgvector.asyncpg import register_vector

from team_memory_core import telemetry
from team_memory_core.models.principal import Principal
from team_memory_core.settings import Settings

Connection = asyncpg.Connection
Pool = asyncpg.Pool


# jsonb in and out as Python values, as pgvector registers `vector`: no caller converts a
# jsonb column by hand. Ids and times in an audit or history detail are written as text.
_json_text = functools.partial(json.dumps, default=str)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_vector(conn)
    await conn.set_type_codec("jsonb", encoder=_json_text, decoder=json.loads,
                              schema="pg_catalog")
    if telemetry.tracing_enabled():
        conn.add_query_logger(_record_sql_span)


def _record_sql_span(query: LoggedQuery) -> None:
    """A span per statement, without its arguments: the scope's values, literals in the text
    of a tenant transaction's BEGIN (``begin_scoped``), are left out too."""
    if query.query.startswith(_SCOPED_BEGIN):
        query = query._replace(query=_SCOPED_BEGIN + "...)")
    telemetry.record_sql_span(query)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool, besides the rollback of an
    unfinished transaction asyncpg always does: nothing. Every setting this application makes
    is transaction-local (``set_config(..., true)``, ``SET LOCAL``), and it takes no session
    advisory lock, listens to nothing and keeps no cursor across transactions
    (tests/team_memory_core/store/test_pool.py checks the code for each). asyncpg's default
    reset (``RESET ALL`` and three more statements) cost one round trip per transaction."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        # Statements are prepared per connection and reused; keep many of them.
        statement_cache_size=256,
        command_timeout=30,
    )
    assert pool is not None
    return pool


async def create_app_pool(settings: Settings, dsn: str | None = None) -> asyncpg.Pool:
    url = dsn or settings.database_url
    if url is None:
        raise RuntimeError("DATABASE_URL is not set (run under `team-memory up` or set it)")
    return await create_pool(url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)


@asynccontextmanager
async def tenant_tx(
    pool: asyncpg.Pool, tenant_id: UUID, projects: Sequence[str] | None = None,
    member_id: UUID | None = None,
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in which Row-Level Security shows only ``tenant_id``'s rows, and of
    those only the rows of ``projects`` when given (a project-bound key's reach), and only
    the shared memories and ``member_id``'s personal ones when a member is given.

    The settings are transaction-local, so a pooled connection never carries a tenant over.
    They travel with the BEGIN, in one round trip (asyncpg's ``transaction()`` sends BEGIN
    alone): a simple query, so the values are literals (``begin_scoped``).
    """
    async with pool.acquire() as conn:
        await conn.execute(begin_scoped(tenant_id, projects, member_id))
        try:
            yield conn
        except BaseException:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


_SCOPED_BEGIN = "BEGIN; SELECT set_config('app.tenant_id', "


def begin_scoped(tenant_id: UUID, projects: Sequence[str] | None,
                 member_id: UUID | None) -> str:
    """BEGIN and the scope's settings as one simple query. An unset project list or member
    is '' (NULL for the policies: current_projects(), current_member())."""
    listed = "''" if projects is None else (
        "ARRAY[" + ", ".join(map(sql_literal, projects)) + "]::text[]::text")
    member = "''" if member_id is None else sql_literal(str(member_id))
    return (_SCOPED_BEGIN + sql_literal(str(tenant_id))
            + ", true), set_config('app.projects', " + listed + ", true),"
            " set_config('app.member_id', " + member + ", true)")


def sql_literal(text: str) -> str:
    """``text`` as a string constant in any session: an escape string (E'...') reads
    backslashes the same whatever standard_conforming_strings says, and a NUL (which would
    end the query text) is refused."""
    if "\0" in text:
        raise ValueError("a NUL character cannot be sent to PostgreSQL")
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


async def ping(pool: asyncpg.Pool) -> None:
    """One round trip to the database (readiness checks)."""
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")


@asynccontextmanager
async def beyond_member(conn: asyncpg.Connection, member_id: UUID | None) -> AsyncIterator[None]:
    """Statements of a member's transaction that must reach the rows naming a memory the
    member was just shown to own, also those naming memories the member cannot read (a
    proposal that would merge its purged memory with a colleague's personal one quotes both):
    the tenant's whole view, then the member again. Only for statements keyed by ids the
    member's own view returned. A statement failing inside ends the transaction (rolled
    back by ``tenant_tx``), and its error goes up as it was."""
    await conn.execute("SELECT set_config('app.member_id', '', true)")
    yield
    if member_id is not None:
        await conn.execute("SELECT set_config('app.member_id', $1, true)", str(member_id))


def review_tx(
    pool: asyncpg.Pool, principal: Principal
) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """The transaction of a member deciding on the review queue: its tenant and its key's
    projects, but no member. Approving shares a memory the reviewer may not read itself (its
    author's personal memory, which the queue shows as a copy); the statements run in it are
    the review's own (mcp_server/sharing.py), on the one memory the decision is about."""
    return tenant_tx(pool, principal.tenant_id, principal.projects)


def principal_tx(
    pool: asyncpg.Pool, principal: Principal
) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """The transaction every request of a caller runs in: its tenant, its project when its
    key is bound to one, and its member (enforced by the database for every query, by id
    included)."""
    return tenant_tx(pool, principal.tenant_id, principal.projects, principal.member_id)
