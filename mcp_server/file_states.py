"""The file states the Claude Code hooks report (docs/freshness.md): kept, and applied to the
memories anchored to those files, which become fresh, changed or gone. The hooks compute the
states in the repository; no file content reaches the server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from team_memory_core.anchoring import apply_states
from team_memory_core.hook_protocol import ANCHOR_CACHE_MAX
from team_memory_core.models.anchors import FileState
from team_memory_core.models.principal import Principal
from team_memory_core.store import anchors
from team_memory_core.store.pool import principal_tx


@dataclass(frozen=True)
class Report:
    """What one hook call reported: the states of files of a project, in a session, at a
    time of the hook's clock (the newest report of a file wins, whatever the arrival order)."""

    project: str
    session_id: str | None
    states: Sequence[FileState]
    at: datetime


@dataclass
class FileStates:
    pool: asyncpg.Pool

    async def apply(self, principal: Principal, reports: Sequence[Report]) -> int:
        """Apply reports oldest first, in one transaction; returns how many anchors moved."""
        pending = sorted((r for r in reports if r.states), key=lambda r: r.at)
        if not pending or principal.read_only:  # a read-only key changes nothing
            return 0
        moved = 0
        async with principal_tx(self.pool, principal) as conn:
            for report in pending:
                moved += len(await apply_states(conn, principal.tenant_id, report.project,
                                                report.session_id, report.states, report.at))
        return moved

    async def anchored_paths(self, principal: Principal, project: str) -> list[str]:
        """The files the project's current memories cite, for the hook to keep re-checking."""
        async with principal_tx(self.pool, principal) as conn:
            return await anchors.anchored_paths(conn, project, ANCHOR_CACHE_MAX)
