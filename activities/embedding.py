"""What the activities that embed texts share: the database, the batcher and the model it
embeds with, the settings, and Claude Haiku when a key is set."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from team_memory_core.active_model import ActiveModel
from team_memory_core.embedder import BatchingEmbedder
from team_memory_core.llm.client import Distiller
from team_memory_core.settings import Settings


@dataclass(kw_only=True)
class EmbeddingActivities:
    pool: asyncpg.Pool
    embedder: BatchingEmbedder
    settings: Settings
    distiller: Distiller | None = None

    def __post_init__(self) -> None:
        # The batcher embeds with the database's active model, followed across a re-embed.
        self.model = ActiveModel.wrapping(self.embedder.embedder, self.settings)
        self.embedder.embedder = self.model
