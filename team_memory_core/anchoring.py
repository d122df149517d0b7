"""Anchoring memories to files and applying the file states hooks report (docs/freshness.md):
the steps every path shares (the save, the hook endpoints, capture, consolidation, import),
each inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from team_memory_core.models.anchors import AnchorInput, FileState, Freshness
from team_memory_core.rules.freshness import (
    Transition,
    event_reason,
    memory_freshness,
    transitions,
    unique_states,
)
from team_memory_core.store import anchors, history


async def anchor_memory(conn: asyncpg.Connection, tenant_id: UUID, memory_id: UUID,
                        project: str, cited: Sequence[AnchorInput]) -> None:
    """Anchor a memory to the files it cites (files it cites already keep their anchor)."""
    if cited:
        await anchors.insert_anchors(conn, tenant_id, memory_id, project, cited)
        await refresh_freshness(conn, [memory_id])


async def refresh_freshness(conn: asyncpg.Connection, memory_ids: Collection[UUID]) -> None:
    """Each memory's freshness from its anchors (the one rule: rules/freshness.py)."""
    states: dict[UUID, list[Freshness]] = {memory_id: [] for memory_id in memory_ids}
    for row in await anchors.anchor_rows(conn, list(memory_ids)):
        states[row.memory_id].append(row.freshness)
    await anchors.set_memory_freshness(
        conn, {memory_id: memory_freshness(found) for memory_id, found in states.items()})


async def apply_states(conn: asyncpg.Connection, tenant_id: UUID, project: str,
                       session_id: str | None, reported: Sequence[FileState],
                       at: datetime) -> list[Transition]:
    """Keep reported file states and move the anchors they concern: fresh, changed or gone,
    each move with a history event on its memory. A state older than the one kept for its
    file (a late replay) changes nothing."""
    news = await anchors.record_file_states(conn, tenant_id, project, session_id,
                                            unique_states(reported), at)
    if not news:
        return []
    moved = transitions(await anchors.lock_anchors(conn, project, [s.path for s in news]),
                        news, at, session_id)
    if not moved:
        return []
    await anchors.update_anchors(conn, [t.anchor for t in moved])
    for step in moved:
        if step.event is not None:
            await history.insert_event(
                conn, tenant_id=tenant_id, memory_id=step.anchor.memory_id, event=step.event,
                reason=event_reason(step.anchor),
                detail={"path": step.anchor.path, "session_id": session_id,
                        "saved": step.anchor.blob, "reported": step.reported})
    await refresh_freshness(conn, {t.anchor.memory_id for t in moved})
    return moved
