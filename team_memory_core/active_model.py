"""The model a process embeds with: the database's active embedding model, followed across the
switch of a re-embed (docs/retrieval.md, "Changing the embedding model").

A process starts with a model it loaded (the configured one, usually the database's). Whatever
it embeds is checked against the database's active model inside the transaction that uses the
vector, after locking memories (``store.embeddings.active_model``): the switch waits for that
transaction, so a vector is only ever compared with, or stored among, vectors of its own model.
When the check finds another model, the process loads it (once) and the caller embeds again: a
search at once, a workflow step by its retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
import numpy as np
from temporalio.exceptions import ApplicationError

from team_memory_core.embedder import (
    BATCH_TUNING,
    Embedder,
    EmbeddingModel,
    SessionTuning,
    configured_model,
    create_embedder_for,
    same_model,
)
from team_memory_core.settings import Settings
from team_memory_core.store import embeddings

log = logging.getLogger("team_memory.embedding")


class ModelChanged(ApplicationError):
    """A vector was made by a model the database no longer uses (a re-embed switched while it
    was being made): retried, with the new model, like any storage step."""

    def __init__(self, used: str, active: EmbeddingModel) -> None:
        super().__init__(f"embedded by {used}, but the database now uses {active}",
                         non_retryable=False)


class ActiveModel:
    """An ``Embedder`` for the model this process believes active; ``confirm`` and ``follow``
    move it to the database's."""

    def __init__(self, current: Embedder, settings: Settings,
                 tuning: SessionTuning = BATCH_TUNING) -> None:
        self._current = current
        self._settings = settings
        self._tuning = tuning
        self._switching = asyncio.Lock()

    @classmethod
    def wrapping(cls, embedder: Embedder, settings: Settings,
                 tuning: SessionTuning = BATCH_TUNING) -> ActiveModel:
        """``embedder`` itself when it already follows the database, else a follower of it."""
        return embedder if isinstance(embedder, ActiveModel) else cls(embedder, settings, tuning)

    @property
    def current(self) -> Embedder:
        """The embedder to use now; keep it with what it embeds, for ``confirm``."""
        return self._current

    @property
    def name(self) -> str:
        return self._current.name

    @property
    def dim(self) -> int:
        return self._current.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._current.embed(texts)

    async def follow(self, model: EmbeddingModel) -> Embedder:
        """The embedder of ``model``, loaded the first time (off the event loop) and used from
        then on."""
        async with self._switching:
            if not same_model(self._current, model):
                self._current = await asyncio.to_thread(create_embedder_for, model,
                                                        self._settings, self._tuning)
            return self._current

    async def confirm(self, conn: asyncpg.Connection, used: Embedder) -> None:
        """Raise ``ModelChanged`` (after following the database) unless ``used`` makes the
        active model's vectors. Call inside the transaction that writes or compares the vector,
        before it does."""
        active = await embeddings.active_model(conn, write=True)
        if not same_model(used, active):
            await self.follow(active)
            raise ModelChanged(str(used.name), active)

    async def for_this_transaction(self, conn: asyncpg.Connection) -> Embedder:
        """The embedder of the active model for a reading transaction (a search): its
        vectors match the columns the transaction reads until it ends."""
        active = await embeddings.active_model(conn)
        used = self._current
        return used if same_model(used, active) else await self.follow(active)


async def load_database_model(pool: asyncpg.Pool, settings: Settings, loaded: Embedder | None,
                              tuning: SessionTuning = BATCH_TUNING) -> Embedder:
    """The embedder of the database's active model, for a process starting: ``loaded`` (the
    configured model, loaded meanwhile) when it is that model. After a re-embed the database's
    model wins over TEAM_MEMORY_EMBEDDING_MODEL / _DIM, which name a new database's model."""
    async with pool.acquire() as conn, conn.transaction():
        active = await embeddings.active_model(conn)
    if loaded is not None and same_model(loaded, active):
        return loaded
    log.info("the database uses %s (configured: %s): loading it", active,
             configured_model(settings))
    return await asyncio.to_thread(create_embedder_for, active, settings, tuning)
