"""Everything the product stored, as text to search: every text-like column of every table
(read as the schema owner, so Row-Level Security hides nothing) and the bytes of Temporal
workflow histories, their payloads decrypted with the tenant's keys (the raw bytes are
ciphertext: tests/team_memory/test_payload_encryption.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from uuid import UUID

import asyncpg
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import PayloadCodec

from team_memory_core.contract import TENANT_KEY
from team_memory_core.payload_codec import is_encrypted
from team_memory_core.temporal_keys import KeyUnavailable


async def capture_session(
    conn: asyncpg.Connection, key_id: UUID, session_id: str
) -> asyncpg.Record | None:
    """A capture session's counters (in the caller's tenant transaction)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT session_id, project, events_received, events_distilled, events_skipped,"
        " observations, input_tokens, output_tokens, last_skip_reason"
        " FROM capture_sessions WHERE session_id = $1 AND key_id = $2",
        session_id, key_id,
    )
    return row


async def stored_columns(admin: asyncpg.Pool) -> dict[str, str]:
    """``table.column`` -> every value of that column as text, one per line."""
    async with admin.acquire() as conn:
        columns = await conn.fetch(
            """
            SELECT c.table_name, c.column_name FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
              AND (c.data_type IN ('text', 'jsonb', 'json', 'tsvector', 'ARRAY',
                                   'character varying')
                   OR (c.data_type = 'USER-DEFINED' AND c.udt_name <> 'vector'))
            """)
        found = {}
        for column in columns:
            table, name = column["table_name"], column["column_name"]
            values = await conn.fetchval(
                f'SELECT string_agg("{name}"::text, E\'\\n\') FROM "{table}"')
            found[f"{table}.{name}"] = values or ""
    return found


async def workflow_histories(client: Client, tenant_name: str) -> dict[str, bytes]:
    """Workflow id -> the serialized events of every workflow run of the tenant, each payload
    decrypted (its data as the workers read it)."""
    codec = client.data_converter.payload_codec
    assert codec is not None
    histories = {}
    async for execution in client.list_workflows(f'{TENANT_KEY.name} = "{tenant_name}"'):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        for event in history.events:
            await _open_payloads(event, codec)
        histories[f"{execution.id}/{execution.run_id}"] = b"".join(
            event.SerializeToString() for event in history.events)
    return histories


async def _open_payloads(message: Message, codec: PayloadCodec) -> None:
    """Decrypt, in place, every payload the message holds (a purged one stays sealed)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            items = [value]
        elif field.message_type.GetOptions().map_entry:
            items = list(value.values())
        else:  # repeated
            items = list(value)
        for item in items:
            if not isinstance(item, Payload):
                await _open_payloads(item, codec)
            elif is_encrypted(item):
                with contextlib.suppress(KeyUnavailable):
                    item.CopyFrom((await codec.decode([item]))[0])


def forms(needle: str) -> set[str]:
    """The needle as stored raw and inside JSON (jsonb, pydantic payloads escape quotes and
    newlines)."""
    return {needle, json.dumps(needle)[1:-1]}


def leaks(needles: Iterable[str], places: Mapping[str, str | bytes]) -> list[tuple[str, str]]:
    """(needle, place) for every needle found in a place."""
    texts = {place: text if isinstance(text, str) else text.decode("utf-8", "replace")
             for place, text in places.items()}
    return sorted({(needle, place) for needle in needles for form in forms(needle)
                   for place, text in texts.items() if form in text})
