"""The files a memory is about (its anchors) and whether they moved on since it was saved."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Freshness(StrEnum):
    """How a memory's files compare with the files it was saved against."""

    FRESH = "fresh"  # the same content (or not reported since)
    CHANGED = "changed"  # other content, or one of several files gone
    GONE = "gone"  # every file it cites was deleted or moved away


class AnchorInput(BaseModel):
    """A file a memory cites, as saved or imported: a checked repository-relative path and,
    when known (an import), the file's git blob hash at save time."""

    model_config = ConfigDict(frozen=True)

    path: str
    blob: str | None = None


class Anchor(BaseModel):
    """A memory's file as stored, with its freshness."""

    model_config = ConfigDict(frozen=True)

    path: str
    blob: str | None  # None until a hook first reports the file
    freshness: Freshness
    changed_at: datetime | None = None
    changed_session: str | None = None


class FileState(BaseModel):
    """What a hook reported of one file: its git blob hash, or None when it does not exist."""

    model_config = ConfigDict(frozen=True)

    path: str
    blob: str | None
