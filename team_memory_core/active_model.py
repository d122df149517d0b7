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
    QueryEmbedder,
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
        # The model a re-embed is building, loading in the background before its switch.
        self._next: tuple[EmbeddingModel, asyncio.Task[Embedder]] | None = None

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

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search queries as the current model embeds them (``QueryEmbedder``)."""
        current = self._current
        return (current.embed_queries(texts) if isinstance(current, QueryEmbedder)
                else current.embed(texts))

    async def follow(self, model: EmbeddingModel) -> Embedder:
        """The embedder of ``model``, loaded the first time (off the event loop) and used from
        then on."""
        async with self._switching:
            if not same_model(self._current, model):
                preloaded = self._next
                self._next = None
                self._current = await (preloaded[1] if preloaded and preloaded[0] == model
                                       else self._load(model))
            return self._current

    def _load(self, model: EmbeddingModel) -> asyncio.Task[Embedder]:
        return asyncio.create_task(asyncio.to_thread(create_embedder_for, model,
                                                     self._settings, self._tuning))

    def _preload(self, model: EmbeddingModel | None) -> None:
        """Start loading the model a re-embed builds, so that the first search after its
        switch does not wait for the load (about a second for the local model)."""
        if model is not None and (self._next is None or self._next[0] != model):
            self._next = (model, self._load(model))

    async def confirm(self, conn: asyncpg.Connection, used: Embedder) -> None:
        """Raise ``ModelChanged`` (after following the database) unless ``used`` makes the
        active model's vectors. Call inside the transaction that writes or compares the vector,
        before it does."""
        await self.check(used, await embeddings.active_model(conn, write=True))

    async def check(self, used: Embedder, models: embeddings.ModelsInUse) -> None:
        """``confirm`` with the models the caller read as it reads them (in a statement of its
        own, before it compares or writes the vector)."""
        if not same_model(used, models.active):
            await self.follow(models.active)
            raise ModelChanged(str(used.name), models.active)

    async def following(self, models: embeddings.ModelsInUse) -> Embedder:
        """The embedder of the active model for a reading transaction (a search), given the
        ``models`` it read (``store.search.search_prelude``, after locking memories): its
        vectors match the columns the transaction reads until it ends."""
        self._preload(models.building)
        used = self._current
        return used if same_model(used, models.active) else await self.follow(models.active)


async def load_database_model(pool: asyncpg.Pool, settings: Settings, loaded: Embedder | None,
                              tuning: SessionTuning = BATCH_TUNING) -> Embedder:
    """The embedder of the database's active model, for a process starting: ``loaded`` (the
    configured model, loaded meanwhile) when it is that model. After a re-embed the database's
    model wins over TEAM_MEMORY_EMBEDDING_MODEL / _DIM, which name a new database's model."""
    async with pool.acquire() as conn, conn.transaction():
        active = (await embeddings.active_model(conn)).active
    if loaded is not None and same_model(loaded, active):
        return loaded
    if active != configured_model(settings):
        log.info("the database uses %s (configured: %s): it is the one loaded", active,
                 configured_model(settings))
    return await asyncio.to_thread(create_embedder_for, active, settings, tuning)
