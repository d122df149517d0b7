"""Typed rows out of asyncpg records: what every store function returns instead of a record.

A row class's fields are the statement's columns, by name; a column the class does not name
(or a field the statement does not select) fails at once, in the first test that runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeVar

import asyncpg
import numpy as np

Row = TypeVar("Row")
Tuple = TypeVar("Tuple", bound=NamedTuple)


def one(cls: type[Row], record: asyncpg.Record | None) -> Row | None:
    return None if record is None else cls(**record)


def many(cls: type[Row], records: Iterable[asyncpg.Record]) -> list[Row]:
    return [cls(**record) for record in records]


def tuples(cls: type[Tuple], records: Sequence[asyncpg.Record]) -> list[Tuple]:
    """Records as named tuples, by position: the statement's columns must be the tuple's
    fields, in order (checked on the first record)."""
    if records and tuple(records[0].keys()) != cls._fields:
        raise TypeError(f"columns {tuple(records[0].keys())} are not {cls.__name__}'s fields")
    return [cls._make(record) for record in records]


async def wrote(conn: asyncpg.Connection, statement: str, *args: object) -> bool:
    """Run a write ending in ``RETURNING``: whether it wrote a row (a conflict or an unmet
    condition writes none)."""
    return await conn.fetchval(statement, *args) is not None


def vector_text(vector: np.ndarray) -> str:
    """A vector as pgvector's text input (for arrays of vectors, which go as text[] and are
    cast in the statement)."""
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
