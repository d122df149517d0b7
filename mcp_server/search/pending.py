"""Vectors of acknowledged memories the worker has not embedded yet, for read-your-writes.

A search ranks pending memories by meaning too, so a save is findable the moment it returns.
Embedding them on every search made each search pay for the whole backlog (up to 64 texts,
about a second of CPU); here each pending memory is embedded once per server process. The key
is the memory's id and a digest of its text as read, so a text that changes (a purge erases
it) is never ranked with an old vector; a purge also drops its memories' vectors at once. The
key also names the model, so a search after a re-embed's switch never ranks an old model's
vector.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from uuid import UUID

import numpy as np

from team_memory_core.embedder import Embedder, embed_async
from team_memory_core.store.search import PendingText, PendingVectors

# About 1.5 KB each (384 float32): a few MB, and far more than one search ranks.
CAPACITY = 4096

_Key = tuple[UUID, bytes, str, int]  # memory, digest of its text, the model (name, dim)


class PendingVectorCache:
    """Least recently used out first, at most ``capacity`` vectors."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._vectors: OrderedDict[_Key, np.ndarray] = OrderedDict()

    async def vectors(self, embedder: Embedder, pending: Sequence[PendingText],
                      embed_at_most: int) -> PendingVectors:
        """The vectors of ``pending`` (newest first) known to this process, after embedding at
        most ``embed_at_most`` not seen before: a backlog costs one search a bounded amount of
        work, and each pending memory is embedded once, not by every search."""
        keys = [(memory.id, hashlib.sha256(memory.content.encode()).digest(), embedder.name,
                 embedder.dim) for memory in pending]
        missing = {key: memory.content for key, memory in zip(keys, pending, strict=True)
                   if key not in self._vectors}
        if missing:
            chosen = dict(list(missing.items())[:embed_at_most])
            embedded = await embed_async(embedder, list(chosen.values()))
            self._vectors.update(zip(chosen, (np.asarray(v) for v in embedded), strict=True))
        known = [(memory.id, key) for memory, key in zip(pending, keys, strict=True)
                 if key in self._vectors]
        found = PendingVectors(ids=[memory_id for memory_id, _ in known],
                               vectors=[self._vectors[key] for _, key in known])
        for _, key in known:
            self._vectors.move_to_end(key)
        while len(self._vectors) > self._capacity:
            self._vectors.popitem(last=False)
        return found

    def discard(self, memory_ids: Iterable[UUID]) -> None:
        gone = set(memory_ids)
        for key in [key for key in self._vectors if key[0] in gone]:
            del self._vectors[key]

    def __len__(self) -> int:
        return len(self._vectors)
