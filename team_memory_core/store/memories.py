"""The memory rows: the save's write path, the status a workflow commits, reads by id,
forget, restore and erasure.

Each function takes a connection already inside ``pool.tenant_tx``: Row-Level Security, not
these WHERE clauses, is what keeps tenants apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
import numpy as np
from pydantic import ConfigDict

from team_memory_core.models.memories import IngestInput, MemoryStatus, StoredMemory
from team_memory_core.store.rows import many, wrote

# The provenance columns: the author's name (members is the tenant's registry, under RLS)
# and the scope, from the memory's own columns (works whatever the memories table's alias).
PROVENANCE_COLUMNS = """
    (SELECT mb.name FROM members mb WHERE mb.id = author_id) AS author, origin, origin_session,
    CASE WHEN private_to IS NOT NULL THEN 'personal' WHEN project = '*' THEN 'team'
         ELSE 'project' END AS scope
"""
MEMORY_COLUMNS = f"""
    id, project, content, category, importance, tags, status, source, duplicate_of,
    superseded_by, merged_from, valid_from, valid_to, created_at, occurred_at, updated_at,
    freshness, content_hash, generation, injection_flags, private_to, {PROVENANCE_COLUMNS}
"""


class MemoryRow(StoredMemory):
    """A memory as stored (``MEMORY_COLUMNS``), with what names its ingestion workflow."""

    model_config = ConfigDict(frozen=True)

    content_hash: str
    generation: int
    private_to: UUID | None = None  # the member of a personal memory


def memory_row(record: asyncpg.Record) -> MemoryRow:
    """A record holding ``MEMORY_COLUMNS`` (other columns are left out)."""
    return MemoryRow.model_validate(dict(record))


# --- write path ---------------------------------------------------------------------------


async def insert_pending(conn: asyncpg.Connection, item: IngestInput,
                         injection_flags: Sequence[str]) -> bool:
    """Insert the acknowledged memory as `pending` (searchable before its workflow commits),
    flagged from the start when its text looks aimed at AI agents.

    Returns False when a memory with that id already exists.
    """
    return await wrote(
        conn,
        """
        INSERT INTO memories (id, tenant_id, project, content, category, importance, tags,
                              content_hash, source, created_by, occurred_at, generation,
                              author_id, origin, origin_session, private_to, status,
                              injection_flags)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                'pending', $17)
        ON CONFLICT (id) DO NOTHING
        RETURNING id
        """,
        *_row_values(item), list(injection_flags),
    )


async def upsert_embedding(
    conn: asyncpg.Connection, item: IngestInput, embedding: np.ndarray,
    injection_flags: Sequence[str],
) -> None:
    """Store the vector on the memory row, creating the row if the server never wrote it."""
    await conn.execute(
        """
        INSERT INTO memories (id, tenant_id, project, content, category, importance, tags,
                              content_hash, source, created_by, occurred_at, generation,
                              author_id, origin, origin_session, private_to, status,
                              embedding, injection_flags)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                'pending', $17, $18)
        ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding
        WHERE memories.embedding IS NULL AND memories.purged_at IS NULL
        """,
        *_row_values(item), embedding, list(injection_flags),
    )


async def add_injection_flags(conn: asyncpg.Connection, memory_id: UUID,
                              flags: Sequence[str]) -> None:
    """Add these flags to the memory's (a flag is never removed here)."""
    await conn.execute(
        "UPDATE memories SET injection_flags = injection_flags || ARRAY(SELECT f FROM"
        " unnest($2::text[]) f WHERE f <> ALL(injection_flags)) WHERE id = $1",
        memory_id, list(flags),
    )


def _row_values(item: IngestInput) -> tuple[object, ...]:
    """The sixteen columns a saved memory's row starts with, in insert order."""
    return (item.memory_id, item.tenant_id, item.project, item.content, item.category.value,
            item.importance, item.tags, item.content_hash, item.source, item.key_id,
            item.occurred_at, item.generation, item.author_id, item.origin.value,
            item.origin_session, item.private_to)


@dataclass(frozen=True)
class StoredVector:
    """A memory's embedding: None before its ingestion embeds it, and after a purge."""

    embedding: np.ndarray | None


async def stored_vector(conn: asyncpg.Connection, memory_id: UUID) -> StoredVector | None:
    """None when no memory has that id."""
    # vector without a dimension: the statement's result type outlives a re-embed's switch
    # (a prepared statement whose result type changes fails inside a transaction).
    row = await conn.fetchrow("SELECT embedding::vector AS embedding FROM memories WHERE id = $1",
                              memory_id)
    return None if row is None else StoredVector(row["embedding"])


@dataclass(frozen=True)
class MemoryState:
    """Where a memory stands: its status and what it points at."""

    id: UUID
    status: MemoryStatus
    duplicate_of: UUID | None
    superseded_by: UUID | None
    content: str
    project: str


async def fetch_status(
    conn: asyncpg.Connection, memory_id: UUID, *, for_update: bool = False
) -> MemoryState | None:
    """``for_update``: locked until the transaction ends (a concurrent forget waits)."""
    row = await conn.fetchrow(
        "SELECT id, status, duplicate_of, superseded_by, content, project FROM memories"
        " WHERE id = $1" + (" FOR UPDATE" if for_update else ""),
        memory_id,
    )
    if row is None:
        return None
    return MemoryState(id=row["id"], status=MemoryStatus(row["status"]),
                       duplicate_of=row["duplicate_of"], superseded_by=row["superseded_by"],
                       content=row["content"], project=row["project"])


# The commit's status change may carry the vector too: one new row version (one round of
# index updates, the HNSW insertion among them) instead of one for the vector and one for the
# status.


async def activate(
    conn: asyncpg.Connection, memory_id: UUID, embedding: np.ndarray | None = None
) -> None:
    await conn.execute(
        "UPDATE memories SET status = 'active', embedding = coalesce($2, embedding),"
        " updated_at = now() WHERE id = $1 AND status = 'pending'",
        memory_id, embedding,
    )


async def mark_duplicate(
    conn: asyncpg.Connection, memory_id: UUID, target_id: UUID, *,
    was: MemoryStatus = MemoryStatus.PENDING, embedding: np.ndarray | None = None,
) -> bool:
    """Retire a memory that repeats ``target_id``, kept as history: a pending one at its
    ingestion (with its vector), a live one at consolidation. False: it is not ``was``."""
    return await wrote(
        conn,
        "UPDATE memories SET status = 'duplicate', duplicate_of = $2,"
        " embedding = coalesce($3, embedding), valid_to = now(), updated_at = now()"
        " WHERE id = $1 AND status = $4 RETURNING id",
        memory_id, target_id, embedding, was.value,
    )


async def mark_needs_review(conn: asyncpg.Connection, memory_id: UUID) -> None:
    await conn.execute("UPDATE memories SET needs_review = true WHERE id = $1", memory_id)


async def update_content(
    conn: asyncpg.Connection, memory_id: UUID, content: str, merged_from: UUID,
    embedding: np.ndarray | None,
) -> str | None:
    """Rewrite a live memory with merged text; returns the text it had before."""
    before: str | None = await conn.fetchval(
        "SELECT content FROM memories WHERE id = $1 FOR UPDATE", memory_id
    )
    await conn.execute(
        """
        UPDATE memories SET content = $2, embedding = coalesce($4, embedding),
               merged_from = array_append(merged_from, $3), origin = 'merge',
               updated_at = now()
        WHERE id = $1
        """,
        memory_id, content, merged_from, embedding,
    )
    return before


async def supersede(conn: asyncpg.Connection, old_id: UUID, new_id: UUID,
                    was: Sequence[MemoryStatus] = (MemoryStatus.ACTIVE,)) -> bool:
    """Retire ``old_id`` for ``new_id``, kept as history: a live memory another replaces, or
    a personal one shared as ``new_id``. False: its status is none of ``was``."""
    return await wrote(
        conn,
        "UPDATE memories SET status = 'superseded', superseded_by = $2, valid_to = now(),"
        " updated_at = now() WHERE id = $1 AND status = ANY($3::text[]) RETURNING id",
        old_id, new_id, [status.value for status in was],
    )


async def archive(conn: asyncpg.Connection, memory_id: UUID) -> bool:
    """Retire an active memory as archived; False when it is not active (any more)."""
    return await wrote(
        conn,
        "UPDATE memories SET status = 'archived', valid_to = now(), updated_at = now()"
        " WHERE id = $1 AND status = 'active' RETURNING id",
        memory_id,
    )


# --- reads by id ----------------------------------------------------------------------------


async def get_memory(conn: asyncpg.Connection, memory_id: UUID) -> MemoryRow | None:
    row = await conn.fetchrow(f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = $1",
                              memory_id)
    return None if row is None else memory_row(row)


async def get_memories(conn: asyncpg.Connection, ids: list[UUID]) -> list[MemoryRow]:
    rows = await conn.fetch(
        f"SELECT {MEMORY_COLUMNS} FROM memories WHERE id = ANY($1::uuid[])", ids
    )
    return [memory_row(row) for row in rows]


async def pending_ids(conn: asyncpg.Connection, ids: list[UUID]) -> list[UUID]:
    """Those of ``ids`` still waiting for their workflow to commit them."""
    rows = await conn.fetch(
        "SELECT id FROM memories WHERE id = ANY($1::uuid[]) AND status = 'pending'", ids
    )
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class UnflaggedMemory:
    id: UUID
    seq: int
    content: str


async def unflagged_page(conn: asyncpg.Connection, after_seq: int,
                         limit: int) -> list[UnflaggedMemory]:
    """One page (insertion order) of the tenant's current memories not flagged as aimed at
    AI agents: what a re-screening with the injection rules reads."""
    rows = await conn.fetch(
        "SELECT id, seq, content FROM memories WHERE status IN ('pending', 'active')"
        " AND cardinality(injection_flags) = 0 AND seq > $1 ORDER BY seq LIMIT $2",
        after_seq, limit,
    )
    return many(UnflaggedMemory, rows)


@dataclass(frozen=True)
class ExportPage:
    memories: list[MemoryRow]
    last_seq: int  # where the next page starts (insertion order)


async def export_page(
    conn: asyncpg.Connection, project: str, statuses: list[str], after_seq: int, limit: int
) -> ExportPage:
    """One page of a project's memories in insertion order (export)."""
    rows = await conn.fetch(
        f"""
        SELECT {MEMORY_COLUMNS}, seq FROM memories
        WHERE project = $1 AND status = ANY($2::text[]) AND seq > $3
        ORDER BY seq
        LIMIT $4
        """,
        project, statuses, after_seq, limit,
    )
    return ExportPage(memories=[memory_row(row) for row in rows],
                      last_seq=rows[-1]["seq"] if rows else after_seq)


async def recent_important(
    conn: asyncpg.Connection, projects: list[str], since: datetime, min_importance: int,
    limit: int,
) -> list[MemoryRow]:
    rows = await conn.fetch(
        f"""
        SELECT {MEMORY_COLUMNS} FROM memories
        WHERE project = ANY($1::text[]) AND status IN ('pending', 'active')
          AND created_at >= $2 AND importance >= $3
        ORDER BY importance DESC, created_at DESC
        LIMIT $4
        """,
        projects, since, min_importance, limit,
    )
    return [memory_row(row) for row in rows]


async def count_by_status(conn: asyncpg.Connection) -> dict[str, int]:
    """Memories of the transaction's tenant per status. The explicit tenant filter matters
    when the caller is a superuser (the embedded cluster's admin), whom RLS does not bind."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM memories"
                            " WHERE tenant_id = current_tenant() GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}


# --- forget, restore, purge -------------------------------------------------------------------


async def forget(conn: asyncpg.Connection, memory_id: UUID) -> bool:
    """Soft-forget a memory; False when there is none to forget (or it is forgotten)."""
    return await wrote(
        conn,
        "UPDATE memories SET status = 'forgotten', valid_to = now(), updated_at = now()"
        " WHERE id = $1 AND status <> 'forgotten' RETURNING id, content",
        memory_id,
    )


async def restore(conn: asyncpg.Connection, memory_id: UUID) -> MemoryStatus | None:
    """Undo a soft forget; the status follows from what the memory was linked to. None when
    no forgotten, unpurged memory has that id."""
    row = await conn.fetchrow(
        """
        UPDATE memories SET
            status = CASE WHEN duplicate_of IS NOT NULL THEN 'duplicate'
                          WHEN superseded_by IS NOT NULL THEN 'superseded'
                          WHEN embedding IS NULL THEN 'pending'
                          ELSE 'active' END,
            valid_to = CASE WHEN duplicate_of IS NULL AND superseded_by IS NULL THEN NULL
                            ELSE valid_to END,
            updated_at = now()
        WHERE id = $1 AND status = 'forgotten' AND purged_at IS NULL
        RETURNING id, status
        """,
        memory_id,
    )
    return None if row is None else MemoryStatus(row["status"])


@dataclass(frozen=True)
class PurgeMember:
    """A memory to purge: the one asked for, or one folded into it as a duplicate."""

    id: UUID
    project: str
    content_hash: str
    generation: int
    duplicate_of: UUID | None
    purged_at: datetime | None
    source: str | None
    created_by: UUID | None
    private_to: UUID | None


async def purge_family(conn: asyncpg.Connection, memory_id: UUID) -> list[PurgeMember]:
    """Lock a memory and the memories folded into it (same text), for purging; the memory
    itself first."""
    rows = await conn.fetch(
        "SELECT id, project, content_hash, generation, duplicate_of, purged_at, source,"
        " created_by, private_to FROM memories"
        " WHERE id = $1 OR duplicate_of = $1 ORDER BY id = $1 DESC FOR UPDATE",
        memory_id,
    )
    return many(PurgeMember, rows)


async def erase_memories(conn: asyncpg.Connection, ids: list[UUID]) -> None:
    """Erase the text of memories (content, generated search text, tags, source, vector)."""
    await conn.execute(
        """
        UPDATE memories SET content = '', tags = '{}', source = NULL, embedding = NULL,
               freshness = NULL, status = 'forgotten', valid_to = coalesce(valid_to, now()),
               purged_at = coalesce(purged_at, now()), updated_at = now()
        WHERE id = ANY($1::uuid[])
        """,
        ids,
    )


async def lock_against_purge(conn: asyncpg.Connection, ids: list[UUID]) -> bool:
    """Share-lock these memories until the transaction ends (a purge waits, or is waited
    for); True when one of them is purged already."""
    purged = await conn.fetchval(
        "SELECT count(*) FROM (SELECT purged_at FROM memories WHERE id = ANY($1::uuid[])"
        " ORDER BY id FOR SHARE) m WHERE purged_at IS NOT NULL",
        ids,
    )
    return bool(purged)
