"""Everything the product stored, as text to search: every text-like column of every table
(read as the schema owner, so Row-Level Security hides nothing) and the raw bytes of Temporal
workflow histories."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import asyncpg
from temporalio.client import Client

from team_memory.temporal import TENANT_KEY


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
    """Workflow id -> the serialized events of every workflow run of the tenant (payloads in
    them are raw bytes, as the server stores them)."""
    histories = {}
    async for execution in client.list_workflows(f'{TENANT_KEY.name} = "{tenant_name}"'):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        histories[f"{execution.id}/{execution.run_id}"] = b"".join(
            event.SerializeToString() for event in history.events)
    return histories


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
