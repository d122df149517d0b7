"""Anchors (sql/013_anchors.sql): the files a memory cites, the file states the hooks report,
and each memory's freshness. Design: docs/freshness.md.

Each function takes a connection already inside ``pool.tenant_tx``: Row-Level Security keeps
tenants (and a project-bound key's other projects) apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from team_memory_core.models.anchors import Anchor, AnchorInput, FileState, Freshness
from team_memory_core.store.rows import many


async def insert_anchors(
    conn: asyncpg.Connection, tenant_id: UUID, memory_id: UUID, project: str,
    anchors: Sequence[AnchorInput],
) -> None:
    """Anchor a memory to these files (a file it cites already is left as it is)."""
    await conn.execute(
        """
        INSERT INTO memory_anchors (tenant_id, memory_id, project, path, blob)
        SELECT $1, $2, $3, a.path, a.blob FROM unnest($4::text[], $5::text[]) AS a (path, blob)
        ON CONFLICT (memory_id, path) DO NOTHING
        """,
        tenant_id, memory_id, project, [a.path for a in anchors], [a.blob for a in anchors],
    )


async def record_file_states(
    conn: asyncpg.Connection, tenant_id: UUID, project: str, session_id: str | None,
    states: Sequence[FileState], at: datetime,
) -> list[FileState]:
    """Keep what a hook reported of these files (one state per path); returns the states
    that are news: not older than what was kept (a replayed report can be)."""
    rows = await conn.fetch(
        """
        INSERT INTO file_states (tenant_id, project, path, blob, session_id, observed_at)
        SELECT $1, $2, s.path, s.blob, $3, $4 FROM unnest($5::text[], $6::text[]) AS s (path, blob)
        ON CONFLICT (tenant_id, project, path) DO UPDATE
            SET blob = EXCLUDED.blob, session_id = EXCLUDED.session_id,
                observed_at = EXCLUDED.observed_at
            WHERE file_states.observed_at <= EXCLUDED.observed_at
        RETURNING path, blob
        """,
        tenant_id, project, session_id, at, [s.path for s in states], [s.blob for s in states],
    )
    return many(FileState, rows)


async def session_file_states(
    conn: asyncpg.Connection, project: str, session_id: str, paths: Sequence[str]
) -> dict[str, str]:
    """The hashes of these files as a session last reported them (existing files only)."""
    rows = await conn.fetch(
        "SELECT path, blob FROM file_states WHERE project = $1 AND session_id = $2"
        " AND path = ANY($3::text[]) AND blob IS NOT NULL",
        project, session_id, list(paths),
    )
    return {row["path"]: row["blob"] for row in rows}


@dataclass(frozen=True)
class AnchorRow:
    memory_id: UUID
    path: str
    blob: str | None
    freshness: Freshness
    changed_at: datetime | None
    changed_session: str | None


_ANCHOR = "a.memory_id, a.path, a.blob, a.freshness, a.changed_at, a.changed_session"


async def lock_anchors(
    conn: asyncpg.Connection, project: str, paths: Sequence[str]
) -> list[AnchorRow]:
    """The anchors of current memories to these files, locked until the transaction ends."""
    rows = await conn.fetch(
        f"""
        SELECT {_ANCHOR} FROM memory_anchors a JOIN memories m ON m.id = a.memory_id
        WHERE a.project = $1 AND a.path = ANY($2::text[]) AND m.status IN ('pending', 'active')
        ORDER BY a.memory_id, a.path
        FOR UPDATE OF a
        """,
        project, list(paths),
    )
    return many(AnchorRow, rows)


async def update_anchors(conn: asyncpg.Connection, changed: Sequence[AnchorRow]) -> None:
    await conn.execute(
        """
        UPDATE memory_anchors a SET blob = c.blob, freshness = c.freshness,
               changed_at = c.changed_at, changed_session = c.changed_session
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                    $6::text[]) AS c (memory_id, path, blob, freshness, changed_at,
                                      changed_session)
        WHERE a.memory_id = c.memory_id AND a.path = c.path
        """,
        [c.memory_id for c in changed], [c.path for c in changed], [c.blob for c in changed],
        [c.freshness.value for c in changed], [c.changed_at for c in changed],
        [c.changed_session for c in changed],
    )


async def anchor_rows(conn: asyncpg.Connection, memory_ids: Sequence[UUID]) -> list[AnchorRow]:
    """The anchors of these memories, by memory and path."""
    rows = await conn.fetch(
        f"SELECT {_ANCHOR} FROM memory_anchors a WHERE a.memory_id = ANY($1::uuid[])"
        " ORDER BY a.memory_id, a.path",
        list(memory_ids),
    )
    return many(AnchorRow, rows)


async def anchors_of(
    conn: asyncpg.Connection, memory_ids: Sequence[UUID]
) -> dict[UUID, list[Anchor]]:
    found: dict[UUID, list[Anchor]] = {}
    for row in await anchor_rows(conn, memory_ids):
        found.setdefault(row.memory_id, []).append(Anchor(
            path=row.path, blob=row.blob, freshness=row.freshness, changed_at=row.changed_at,
            changed_session=row.changed_session))
    return found


async def set_memory_freshness(
    conn: asyncpg.Connection, freshness: Mapping[UUID, Freshness | None]
) -> None:
    """Write each memory's freshness (rows already holding it are not rewritten)."""
    await conn.execute(
        """
        UPDATE memories m SET freshness = f.freshness
        FROM unnest($1::uuid[], $2::text[]) AS f (id, freshness)
        WHERE m.id = f.id AND m.freshness IS DISTINCT FROM f.freshness
        """,
        list(freshness), [None if f is None else f.value for f in freshness.values()],
    )


async def anchored_paths(conn: asyncpg.Connection, project: str, limit: int) -> list[str]:
    """The files current memories of the project cite, the most recently anchored first."""
    rows = await conn.fetch(
        """
        SELECT a.path FROM memory_anchors a JOIN memories m ON m.id = a.memory_id
        WHERE a.project = $1 AND m.status IN ('pending', 'active')
        GROUP BY a.path
        ORDER BY max(a.created_at) DESC
        LIMIT $2
        """,
        project, limit,
    )
    return [row["path"] for row in rows]


@dataclass(frozen=True)
class ChangedMemory:
    """A current memory whose files changed since the nightly review last judged it."""

    id: UUID
    content: str
    category: str
    author_id: UUID | None


async def changed_memories(conn: asyncpg.Connection, project: str,
                           limit: int) -> list[ChangedMemory]:
    """Active memories of the project with a file that changed or went since it was last
    reviewed, the longest-changed first."""
    rows = await conn.fetch(
        """
        SELECT m.id, m.content, m.category, m.author_id FROM memories m
        WHERE m.project = $1 AND m.status = 'active' AND m.freshness IN ('changed', 'gone')
          AND EXISTS (SELECT 1 FROM memory_anchors a
                      WHERE a.memory_id = m.id AND a.freshness <> 'fresh'
                        AND (a.reviewed_at IS NULL OR a.reviewed_at < a.changed_at))
        ORDER BY (SELECT min(a.changed_at) FROM memory_anchors a
                  WHERE a.memory_id = m.id AND a.freshness <> 'fresh'), m.id
        LIMIT $2
        """,
        project, limit,
    )
    return many(ChangedMemory, rows)


@dataclass(frozen=True)
class NewerMemory:
    id: UUID
    content: str
    author_id: UUID | None


async def newer_on_same_files(
    conn: asyncpg.Connection, memory_id: UUID, limit: int
) -> list[NewerMemory]:
    """Current memories saved after ``memory_id`` that cite one of its files: what the team
    wrote about those files since (context for the review of a changed memory). Only those
    its readers may read: the shared ones, and for a personal memory its member's own (the
    review's proposal text must not carry a personal memory's words to a shared one)."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT m.id, m.content, m.author_id, m.created_at FROM memory_anchors mine
        JOIN memory_anchors other ON other.project = mine.project AND other.path = mine.path
                                 AND other.memory_id <> mine.memory_id
        JOIN memories m ON m.id = other.memory_id
        JOIN memories me ON me.id = mine.memory_id
        WHERE mine.memory_id = $1 AND m.status IN ('pending', 'active')
          AND m.created_at > me.created_at
          AND (m.private_to IS NULL OR m.private_to IS NOT DISTINCT FROM me.private_to)
        ORDER BY m.created_at DESC
        LIMIT $2
        """,
        memory_id, limit,
    )
    return [NewerMemory(row["id"], row["content"], row["author_id"]) for row in rows]


async def lock_if_changed(conn: asyncpg.Connection, memory_id: UUID, content: str) -> bool:
    """Lock the memory if it is still active, holds ``content`` and its files still differ."""
    found = await conn.fetchval(
        "SELECT id FROM memories WHERE id = $1 AND status = 'active' AND content = $2"
        " AND freshness IN ('changed', 'gone') FOR UPDATE",
        memory_id, content,
    )
    return found is not None


async def mark_reviewed(conn: asyncpg.Connection, memory_ids: Sequence[UUID]) -> None:
    await conn.execute(
        "UPDATE memory_anchors SET reviewed_at = now() WHERE memory_id = ANY($1::uuid[])",
        list(memory_ids),
    )


async def rebase_on_reported(conn: asyncpg.Connection, memory_id: UUID) -> list[str]:
    """A changed memory judged still true: anchor its changed files to their last reported
    content (fresh again); returns those paths. Gone files stay gone."""
    rows = await conn.fetch(
        """
        UPDATE memory_anchors a SET blob = s.blob, freshness = 'fresh', changed_at = NULL,
               changed_session = NULL
        FROM file_states s
        WHERE a.memory_id = $1 AND a.freshness = 'changed' AND s.project = a.project
          AND s.path = a.path AND s.blob IS NOT NULL
        RETURNING a.path
        """,
        memory_id,
    )
    return [row["path"] for row in rows]


async def erase_anchors(conn: asyncpg.Connection, memory_ids: Sequence[UUID]) -> None:
    """Purge: the paths a memory cited go with its text."""
    await conn.execute("DELETE FROM memory_anchors WHERE memory_id = ANY($1::uuid[])",
                       list(memory_ids))
