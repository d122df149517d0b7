"""Re-screening stored memories with the injection rules: memories saved before the rules
existed (sql/015) or before they learned a pattern. The operator's `team-memory screen
--tenant T` (docs/security.md, "Shared memory")."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from pydantic import BaseModel, Field

from team_memory_core.erasure import Actor
from team_memory_core.models.memories import HistoryEvent
from team_memory_core.rules.injection import Finding, findings, flag_note
from team_memory_core.store import history, memories
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.pool import tenant_tx

PAGE = 500


class ScreenReport(BaseModel):
    checked: int = 0
    flagged: list[UUID] = Field(default_factory=list)


async def screen_stored(pool: asyncpg.Pool, actor: Actor) -> ScreenReport:
    """Run the local rules over the tenant's current memories not flagged yet and flag those
    that trip one, each with its history event and audit row (a page per transaction)."""
    report = ScreenReport()
    after = 0
    while True:
        async with tenant_tx(pool, actor.tenant_id, actor.projects) as conn:
            page = await memories.unflagged_page(conn, after, PAGE)
            for memory in page:
                found = findings(memory.content)
                if found:
                    await _flag(conn, actor, memory.id, found)
                    report.flagged.append(memory.id)
        report.checked += len(page)
        if len(page) < PAGE:
            return report
        after = page[-1].seq


async def _flag(conn: asyncpg.Connection, actor: Actor, memory_id: UUID,
                found: list[Finding]) -> None:
    flags = [f.rule for f in found]
    await memories.add_injection_flags(conn, memory_id, flags)
    await history.insert_event(conn, tenant_id=actor.tenant_id, memory_id=memory_id,
                               event=HistoryEvent.FLAGGED, reason=flag_note(found),
                               policy="local", detail={"actor": actor.name})
    await insert_audit(conn, tenant_id=actor.tenant_id, key_id=actor.key_id, actor=actor.name,
                       action="flag", target=str(memory_id), outcome="ok",
                       detail={"flags": flags})
