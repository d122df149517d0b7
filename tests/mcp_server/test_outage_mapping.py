"""Which failures are a dependency's outage (answered "retry later") and which are not: the
exceptions asyncpg and the Temporal SDK raise, as seen in the outage tests
(tests/test_outage_answers.py), and the refusals that must never read as an outage."""

from __future__ import annotations

import asyncpg
import pytest
from temporalio.service import RPCError, RPCStatusCode

from mcp_server.errors import (
    Dependency,
    DependencyUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    unavailable,
)

POSTGRES_DOWN = [
    FileNotFoundError(2, "No such file or directory"),  # the unix socket of a stopped server
    ConnectionRefusedError(111, "Connection refused"),
    OSError("Multiple exceptions: ..."),  # asyncpg, every address refused
    TimeoutError(),
    asyncpg.CannotConnectNowError("the database system is shutting down"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    ExceptionGroup("signals", [ConnectionRefusedError(), TimeoutError()]),
]
TEMPORAL_DOWN = [
    RPCError("tcp connect error", RPCStatusCode.UNAVAILABLE, b""),
    RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b""),
    RuntimeError("Failed client connect: Server connection error: tcp connect error"),
    ExceptionGroup("signals", [RPCError("tcp connect error", RPCStatusCode.UNAVAILABLE, b"")]),
]
NOT_AN_OUTAGE = [
    Forbidden("this API key is read-only"),  # a PermissionError, hence an OSError
    RateLimited("retry in 3 seconds"),
    InvalidInput("content is empty"),
    NotFound("no memory"),
    PermissionError(13, "Permission denied"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    asyncpg.UniqueViolationError("duplicate key"),
    RPCError("already started", RPCStatusCode.ALREADY_EXISTS, b""),
    RPCError("bad request", RPCStatusCode.INVALID_ARGUMENT, b""),
    RuntimeError("a bug"),
    ExceptionGroup("mixed", [ConnectionRefusedError(), KeyError("a bug")]),
]


@pytest.mark.parametrize("error", POSTGRES_DOWN, ids=repr)
def test_postgres_outages(error: Exception) -> None:
    outage = unavailable(error, "the save was not confirmed")
    assert outage is not None and outage.dependency is Dependency.POSTGRES
    assert str(outage) == ("the memory database (PostgreSQL) is not answering; the save was "
                           "not confirmed; retry in 5 seconds")


@pytest.mark.parametrize("error", TEMPORAL_DOWN, ids=repr)
def test_temporal_outages(error: Exception) -> None:
    outage = unavailable(error)
    assert outage is not None and outage.dependency is Dependency.TEMPORAL
    assert str(outage) == "the workflow engine (Temporal) is not answering; retry in 5 seconds"


@pytest.mark.parametrize("error", NOT_AN_OUTAGE, ids=repr)
def test_refusals_and_bugs_are_no_outage(error: Exception) -> None:
    assert unavailable(error) is None


def test_an_outage_keeps_its_own_words() -> None:
    told = DependencyUnavailable(Dependency.TEMPORAL, "the events were not confirmed")
    assert unavailable(told, "something else") is told
