"""The embedding models of the database and the re-embed's SQL (sql/016_reembed.sql).

memories.embedding holds the active model's vectors; during a re-embed memories.embedding_next
holds the new model's, and after the switch memories.embedding_retired the old ones until they
are cleared. The page functions run in ``tenant_tx`` (Row-Level Security keeps each page to one
tenant); the DDL runs in SECURITY DEFINER functions as the schema owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from uuid import UUID

import asyncpg
import numpy as np

from team_memory_core.embedder import EmbeddingModel, Provider
from team_memory_core.store.rows import many, vector_text

# How long the switch and the start of a re-embed wait for their ACCESS EXCLUSIVE lock. While
# they wait, searches queue behind them: a short wait, retried by the workflow, bounds that.
LOCK_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class ModelRecord:
    """A model the database has held (embedding_models)."""

    generation: int
    provider: str
    name: str
    dim: int
    state: str
    workflow_id: str | None
    created_at: datetime
    switched_at: datetime | None

    @property
    def model(self) -> EmbeddingModel:
        return EmbeddingModel(cast(Provider, self.provider), self.name, self.dim)


@dataclass(frozen=True)
class ModelsInUse:
    active: EmbeddingModel  # of memories.embedding
    building: EmbeddingModel | None  # of memories.embedding_next, while a re-embed runs


async def active_model(conn: asyncpg.Connection, *, write: bool = False) -> ModelsInUse:
    """The model of memories.embedding, read after locking memories (``write``: for a
    transaction that writes vectors): the switch cannot happen before this transaction ends."""
    return models_in_use(await conn.fetchrow(
        "SELECT provider, name, dim, next_provider, next_name, next_dim"
        " FROM active_embedding_model($1)", write))


def models_in_use(row: asyncpg.Record | None) -> ModelsInUse:
    """The models of a row with ``active_embedding_model()``'s columns."""
    if row is None:
        raise RuntimeError("no active embedding model: run `team-memory migrate`")
    building = None if row["next_name"] is None else EmbeddingModel(
        row["next_provider"], row["next_name"], row["next_dim"])
    return ModelsInUse(EmbeddingModel(row["provider"], row["name"], row["dim"]), building)


async def model_records(conn: asyncpg.Connection) -> list[ModelRecord]:
    rows = await conn.fetch(
        "SELECT generation, provider, name, dim, state, workflow_id, created_at, switched_at"
        " FROM embedding_models ORDER BY generation")
    return many(ModelRecord, rows)


async def tenants(conn: asyncpg.Connection) -> list[UUID]:
    return [row[0] for row in await conn.fetch("SELECT reembed_tenants()")]


async def _wait_for_lock_at_most(conn: asyncpg.Connection, milliseconds: int) -> None:
    await conn.execute(f"SET LOCAL lock_timeout = {int(milliseconds)}")


async def begin(conn: asyncpg.Connection, model: EmbeddingModel, workflow_id: str) -> int:
    """Add the new model's column, index and staleness trigger; its generation (the same
    again for the same workflow)."""
    await _wait_for_lock_at_most(conn, LOCK_TIMEOUT_MS)
    generation: int = await conn.fetchval("SELECT reembed_begin($1, $2, $3, $4)",
                                          model.provider, model.name, model.dim, workflow_id)
    return generation


@dataclass(frozen=True)
class Unembedded:
    """A memory without a vector of the new model: its text, and a digest of the text as read
    (the vector is stored only if the text is still that)."""

    id: UUID
    content: str
    digest: str


async def unembedded(conn: asyncpg.Connection, after: UUID | None, limit: int) -> list[Unembedded]:
    """The next memories of the tenant, by id after ``after``, that have an active vector but
    no new one (purged and not yet embedded memories have neither)."""
    rows = await conn.fetch(
        """
        SELECT id, content, md5(content) AS digest FROM memories
        WHERE ($1::uuid IS NULL OR id > $1) AND embedding IS NOT NULL
          AND embedding_next IS NULL
        ORDER BY id
        LIMIT $2
        """,
        after, limit,
    )
    return many(Unembedded, rows)


async def store_next(conn: asyncpg.Connection, memories: Sequence[Unembedded],
                     vectors: np.ndarray) -> int:
    """The new model's vectors of these memories, where their text is still what was embedded
    (a merge or a purge meanwhile leaves the row for the next pass); how many were stored."""
    stored: int = await conn.fetchval(
        """
        WITH written AS (
            UPDATE memories m SET embedding_next = v.vec::vector
            FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v (id, digest, vec)
            WHERE m.id = v.id AND md5(m.content) = v.digest AND m.embedding IS NOT NULL
            RETURNING m.id
        )
        SELECT count(*) FROM written
        """,
        [m.id for m in memories], [m.digest for m in memories],
        [vector_text(vector) for vector in vectors],
    )
    return stored


@dataclass(frozen=True)
class Progress:
    """Of the tenant's memories with an active vector, how many have the new one."""

    embedded: int
    total: int


async def progress(conn: asyncpg.Connection) -> Progress:
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE embedding_next IS NOT NULL) AS embedded,"
        " count(*) AS total FROM memories"
        " WHERE tenant_id = current_tenant() AND embedding IS NOT NULL")
    assert row is not None
    return Progress(int(row["embedded"]), int(row["total"]))


async def lock_for_switch(conn: asyncpg.Connection) -> None:
    """ACCESS EXCLUSIVE on memories until the transaction ends: running searches and writes
    finish first, new ones wait for the switch."""
    await _wait_for_lock_at_most(conn, LOCK_TIMEOUT_MS)
    await conn.execute("LOCK TABLE memories IN ACCESS EXCLUSIVE MODE")


async def set_tenant(conn: asyncpg.Connection, tenant_id: UUID) -> None:
    """Row-Level Security shows ``tenant_id``'s rows for the rest of the transaction (the
    switch visits every tenant in its one transaction)."""
    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))


async def switch(conn: asyncpg.Connection, generation: int) -> None:
    await conn.execute("SELECT reembed_switch($1)", generation)


async def retired_page(conn: asyncpg.Connection, after: UUID | None, limit: int) -> UUID | None:
    """Clear the old vectors of the tenant's next ``limit`` memories by id after ``after``;
    the last id visited, None when none was left."""
    last: UUID | None = await conn.fetchval(
        """
        WITH page AS (
            SELECT id FROM memories
            WHERE ($1::uuid IS NULL OR id > $1) AND embedding_retired IS NOT NULL
            ORDER BY id
            LIMIT $2
        ), cleared AS (
            UPDATE memories m SET embedding_retired = NULL FROM page WHERE m.id = page.id
            RETURNING m.id
        )
        SELECT id FROM cleared ORDER BY id DESC LIMIT 1
        """,
        after, limit,
    )
    return last


async def finish(conn: asyncpg.Connection) -> None:
    await _wait_for_lock_at_most(conn, LOCK_TIMEOUT_MS)
    await conn.execute("SELECT reembed_finish()")


async def abandon(conn: asyncpg.Connection, generation: int) -> None:
    await _wait_for_lock_at_most(conn, LOCK_TIMEOUT_MS)
    await conn.execute("SELECT reembed_abandon($1)", generation)
