"""The save path's outbox (table ingest_outbox, sql/011_outbox.sql): one row per acknowledged
memory whose IngestMemory workflow the worker's relay (team_memory_core/outbox.py) has not
started yet. The row holds no text: the workflow's input is the pending memory row itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from team_memory_core.models.memories import IngestInput
from team_memory_core.store.rows import many

# NOTIFY'd with the row's task queue when a save commits (the table's trigger).
CHANNEL = "team_memory_outbox"


async def enqueue(conn: asyncpg.Connection, item: IngestInput, task_queue: str,
                  trace_context: dict[str, str]) -> None:
    """In the save's transaction, after its pending row: the workflow to start."""
    await conn.execute(
        "INSERT INTO ingest_outbox (memory_id, tenant_id, task_queue, redactions,"
        " trace_context) VALUES ($1, $2, $3, $4, $5)",
        item.memory_id, item.tenant_id, task_queue, item.redactions, trace_context or None,
    )


@dataclass(frozen=True)
class WaitingTenant:
    tenant_id: UUID
    tenant_name: str
    due_in: float  # seconds until its first row is due (0: due now)


async def waiting_tenants(conn: asyncpg.Connection, task_queue: str) -> list[WaitingTenant]:
    """Every tenant with rows for the task queue, soonest due first (SECURITY DEFINER: the
    relay's one cross-tenant read; names and times only)."""
    rows = await conn.fetch(
        "SELECT tenant_id, tenant_name,"
        " greatest(extract(epoch FROM due_at - now()), 0)::float8 AS due_in"
        " FROM ingest_outbox_tenants($1)",
        task_queue,
    )
    return many(WaitingTenant, rows)


@dataclass(frozen=True)
class Claimed:
    """A due row, locked until the transaction ends, with the workflow input it stands for."""

    item: IngestInput
    attempts: int
    trace_context: dict[str, str] | None  # the save's trace


async def claim(conn: asyncpg.Connection, task_queue: str, limit: int) -> list[Claimed]:
    """Lock up to ``limit`` due rows of the transaction's tenant, oldest saves first.

    Rows another relay holds are skipped (two relays never start one memory at once). The
    memory is key-share locked too, skipped when locked harder: a purge holding it waits for
    this transaction, so it can never erase the text and shred the key between the read here
    and the workflow's start; a forget or the embedding's write does not wait.
    """
    rows = await conn.fetch(
        """
        SELECT o.attempts, o.trace_context, m.id AS memory_id, m.tenant_id, m.project,
               m.content, m.category, m.importance, m.tags, m.content_hash, m.occurred_at,
               m.source, m.created_by AS key_id, o.redactions, m.generation, m.author_id,
               m.origin, m.origin_session, m.private_to
        FROM ingest_outbox o JOIN memories m ON m.id = o.memory_id
        WHERE o.task_queue = $1 AND o.available_at <= now()
        ORDER BY m.seq
        LIMIT $2
        FOR UPDATE OF o SKIP LOCKED
        FOR KEY SHARE OF m SKIP LOCKED
        """,
        task_queue, limit,
    )
    return [Claimed(item=IngestInput.model_validate({k: v for k, v in row.items()
                                                     if k not in _OUTBOX_COLUMNS}),
                    attempts=row["attempts"], trace_context=row["trace_context"])
            for row in rows]


_OUTBOX_COLUMNS = ("attempts", "trace_context")


async def remove(conn: asyncpg.Connection, memory_ids: list[UUID]) -> None:
    """The workflows are started (or were already): their rows are done."""
    await conn.execute("DELETE FROM ingest_outbox WHERE memory_id = ANY($1::uuid[])",
                       memory_ids)


async def postpone(
    conn: asyncpg.Connection, memory_id: UUID, delay_s: float, error: str
) -> None:
    """A failed start: try again in ``delay_s`` seconds."""
    await conn.execute(
        "UPDATE ingest_outbox SET attempts = attempts + 1, last_error = $3,"
        " available_at = now() + make_interval(secs => $2) WHERE memory_id = $1",
        memory_id, delay_s, error,
    )


@dataclass(frozen=True)
class Backlog:
    task_queue: str
    entries: int
    oldest_age_s: float  # since the oldest waiting save was acknowledged
    retrying: int  # rows whose start failed at least once
    last_error: str | None  # the most recent failure's


async def backlog(conn: asyncpg.Connection) -> list[Backlog]:
    """Rows waiting per task queue, as the schema owner (`team-memory status`; the table's
    Row-Level Security is not forced for the owner)."""
    rows = await conn.fetch(
        """
        SELECT task_queue, count(*)::int AS entries,
               extract(epoch FROM now() - min(created_at))::float8 AS oldest_age_s,
               (count(*) FILTER (WHERE attempts > 0))::int AS retrying,
               (array_agg(last_error ORDER BY available_at DESC)
                    FILTER (WHERE last_error IS NOT NULL))[1] AS last_error
        FROM ingest_outbox GROUP BY task_queue ORDER BY task_queue
        """)
    return many(Backlog, rows)


async def listen(dsn: str, on_notify: Callable[[str], None],
                 timeout_s: float) -> asyncpg.Connection:
    """A connection of its own that calls ``on_notify(task_queue)`` for every save committed;
    the caller closes it."""
    conn = await asyncpg.connect(dsn, timeout=timeout_s)
    try:
        await conn.add_listener(CHANNEL, lambda _conn, _pid, _channel, payload:
                                on_notify(payload))
    except BaseException:
        await conn.close()
        raise
    return conn
