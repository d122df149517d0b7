"""Capture from Claude Code hooks: sessions (one key's session: tenant, key_id, session_id;
sql/009), the events already processed, and the token usage that budgets distillation."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg


async def ensure_capture_session(
    conn: asyncpg.Connection, tenant_id: UUID, key_id: UUID, session_id: str, project: str
) -> None:
    await conn.execute(
        "INSERT INTO capture_sessions (tenant_id, key_id, session_id, project)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, key_id, session_id) DO NOTHING",
        tenant_id, key_id, session_id, project,
    )


async def member_sessions(conn: asyncpg.Connection, member_id: UUID) -> list[tuple[UUID, str]]:
    """(key id, session id) of every session captured with one of the member's keys."""
    rows = await conn.fetch(
        "SELECT s.key_id, s.session_id FROM capture_sessions s"
        " JOIN api_keys k ON k.id = s.key_id WHERE k.member_id = $1",
        member_id,
    )
    return [(row["key_id"], row["session_id"]) for row in rows]


async def count_capture_received(
    conn: asyncpg.Connection, tenant_id: UUID, key_id: UUID, session_id: str, project: str,
    received: int, skipped: int, skip_reason: str | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO capture_sessions (tenant_id, key_id, session_id, project, events_received,
                                      events_skipped, last_skip_reason)
        VALUES ($1, $7, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id, key_id, session_id) DO UPDATE SET
            events_received = capture_sessions.events_received + EXCLUDED.events_received,
            events_skipped = capture_sessions.events_skipped + EXCLUDED.events_skipped,
            last_skip_reason = coalesce(EXCLUDED.last_skip_reason,
                                        capture_sessions.last_skip_reason),
            updated_at = now()
        """,
        tenant_id, session_id, project, received, skipped, skip_reason, key_id,
    )


async def processed_event_keys(
    conn: asyncpg.Connection, key_id: UUID, session_id: str, keys: list[str]
) -> set[str]:
    rows = await conn.fetch(
        "SELECT event_key FROM capture_events WHERE session_id = $1"
        " AND event_key = ANY($2::text[]) AND key_id = $3",
        session_id, keys, key_id,
    )
    return {row["event_key"] for row in rows}


async def capture_tokens_used(
    conn: asyncpg.Connection, key_id: UUID, session_id: str, day: date
) -> tuple[int, int]:
    """(tokens this session has used, tokens the tenant has used on ``day``) for distillation."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM capture_sessions
                WHERE session_id = $1 AND key_id = $3) AS session,
               (SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM capture_usage_daily
                WHERE day = $2) AS daily
        """,
        session_id, day, key_id,
    )
    assert row is not None
    return int(row["session"]), int(row["daily"])


async def record_capture_outcome(
    conn: asyncpg.Connection, *, tenant_id: UUID, key_id: UUID, session_id: str,
    keys: list[str], outcome: str, skip_reason: str | None = None,
) -> None:
    """Mark events distilled or skipped (once each) and count them on the session."""
    inserted = await conn.fetchval(
        """
        WITH new AS (
            INSERT INTO capture_events (tenant_id, key_id, session_id, event_key, outcome)
            SELECT $1, $5, $2, k, $4 FROM unnest($3::text[]) AS k
            ON CONFLICT DO NOTHING RETURNING 1
        ) SELECT count(*) FROM new
        """,
        tenant_id, session_id, keys, outcome, key_id,
    )
    column = "events_distilled" if outcome == "distilled" else "events_skipped"
    await conn.execute(
        f"UPDATE capture_sessions SET {column} = {column} + $2,"
        " last_skip_reason = coalesce($3, last_skip_reason), updated_at = now()"
        " WHERE session_id = $1 AND key_id = $4",
        session_id, inserted, skip_reason, key_id,
    )


async def add_capture_usage(
    conn: asyncpg.Connection, *, tenant_id: UUID, key_id: UUID, session_id: str, day: date,
    input_tokens: int, output_tokens: int, observations: int,
) -> None:
    await conn.execute(
        "UPDATE capture_sessions SET input_tokens = input_tokens + $2,"
        " output_tokens = output_tokens + $3, observations = observations + $4,"
        " updated_at = now() WHERE session_id = $1 AND key_id = $5",
        session_id, input_tokens, output_tokens, observations, key_id,
    )
    await conn.execute(
        """
        INSERT INTO capture_usage_daily (tenant_id, day, calls, input_tokens, output_tokens)
        VALUES ($1, $2, 1, $3, $4)
        ON CONFLICT (tenant_id, day) DO UPDATE SET
            calls = capture_usage_daily.calls + 1,
            input_tokens = capture_usage_daily.input_tokens + EXCLUDED.input_tokens,
            output_tokens = capture_usage_daily.output_tokens + EXCLUDED.output_tokens
        """,
        tenant_id, day, input_tokens, output_tokens,
    )
