"""Typed rows out of asyncpg records: what every store function returns instead of a record.

A row class's fields are the statement's columns, by name; a column the class does not name
(or a field the statement does not select) fails at once, in the first test that runs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import asyncpg

Row = TypeVar("Row")


def one(cls: type[Row], record: asyncpg.Record | None) -> Row | None:
    return None if record is None else cls(**record)


def many(cls: type[Row], records: Iterable[asyncpg.Record]) -> list[Row]:
    return [cls(**record) for record in records]


async def wrote(conn: asyncpg.Connection, statement: str, *args: object) -> bool:
    """Run a write ending in ``RETURNING``: whether it wrote a row (a conflict or an unmet
    condition writes none)."""
    return await conn.fetchval(statement, *args) is not None
