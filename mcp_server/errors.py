"""What a use case refuses with: each maps to one client-facing answer (a tool error, an HTTP
status) in the transport that called it. Nothing was written when one is raised, except where
DependencyUnavailable says the outcome is not confirmed.

A dependency that does not answer is told apart from a bug here, once: ``unavailable`` knows
the exceptions PostgreSQL (asyncpg) and Temporal raise when they are down, and use cases
translate them at their boundary (``translates_outages``) into DependencyUnavailable, which
every transport answers the same way: a tool error that names the dependency and says when to
retry, or 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from typing import ParamSpec, TypeVar

import asyncpg
from temporalio.service import RPCError, RPCStatusCode

_P = ParamSpec("_P")
_R = TypeVar("_R")

RETRY_AFTER_S = 5


class InvalidInput(ValueError):
    """Bad input from the caller; nothing was written."""


class NotFound(LookupError):
    """No such memory in the caller's scope (one outside it is not found either)."""


class Forbidden(PermissionError):
    """The key may not do this (read-only, bound to another project)."""


class RateLimited(Forbidden):
    """The key is over its per-minute request budget; the message says when to retry."""


class Dependency(StrEnum):
    """What the service depends on, named as a client reads it."""

    POSTGRES = "the memory database (PostgreSQL)"
    TEMPORAL = "the workflow engine (Temporal)"

    @property
    def key(self) -> str:
        """Its short name in JSON answers: postgresql, temporal."""
        return "postgresql" if self is Dependency.POSTGRES else "temporal"


class DependencyUnavailable(Exception):
    """A dependency did not answer: retrying later can succeed; it is no bug of the caller's
    nor of ours. ``outcome``: what became of the write the caller asked for, if any (such as
    "the save was not confirmed": retrying it is safe, every write path is idempotent)."""

    def __init__(self, dependency: Dependency, outcome: str | None = None,
                 retry_after_s: int = RETRY_AFTER_S) -> None:
        self.dependency = dependency
        self.retry_after_s = retry_after_s
        told = f"; {outcome}" if outcome else ""
        super().__init__(f"{dependency} is not answering{told}; "
                         f"retry in {retry_after_s} seconds")


# PostgreSQL down: a refused, reset or vanished socket (a unix socket's file is gone while the
# server is stopped), no answer in time, an unresolvable host; a connection lost mid-query or
# refused at start (class 08), a server shutting down or starting (class 57), out of
# connections (class 53). (asyncpg raises a bare OSError for several failed addresses.)
_SOCKET_DOWN = (ConnectionError, FileNotFoundError, TimeoutError, socket.gaierror)
_POSTGRES_DOWN = (*_SOCKET_DOWN, asyncpg.PostgresConnectionError,
                  asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError)
# Temporal down or overloaded; the SDK retries these itself for about 10 s before raising.
_TEMPORAL_DOWN = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                  RPCStatusCode.RESOURCE_EXHAUSTED)


def unavailable(error: BaseException, outcome: str | None = None
                ) -> DependencyUnavailable | None:
    """The outage ``error`` means, or None when it is something else (a bug, bad input). A
    group of errors (a task group's) is an outage when each of them is one."""
    if isinstance(error, DependencyUnavailable):
        return error
    if isinstance(error, BaseExceptionGroup):
        outages = [unavailable(inner, outcome) for inner in error.exceptions]
        return None if None in outages else outages[0]
    if isinstance(error, RPCError):
        return DependencyUnavailable(Dependency.TEMPORAL, outcome) \
            if error.status in _TEMPORAL_DOWN else None
    if isinstance(error, RuntimeError) and str(error).startswith("Failed client connect"):
        return DependencyUnavailable(Dependency.TEMPORAL, outcome)  # the SDK's connect
    if isinstance(error, _POSTGRES_DOWN) or type(error) is OSError or _closed_connection(error):
        return DependencyUnavailable(Dependency.POSTGRES, outcome)
    return None


def _closed_connection(error: BaseException) -> bool:
    """asyncpg's InterfaceError for a connection the server closed (other InterfaceErrors,
    such as two queries at once on one connection, are bugs)."""
    return isinstance(error, asyncpg.InterfaceError) and "closed" in str(error)


def translates_outages(
    outcome: str | None = None,
) -> Callable[[Callable[_P, Awaitable[_R]]], Callable[_P, Awaitable[_R]]]:
    """A use case whose dependencies' outages raise DependencyUnavailable; ``outcome`` says
    what became of its write when it has one (for example "the save was not confirmed")."""

    def wrap(use_case: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
        @functools.wraps(use_case)
        async def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return await use_case(*args, **kwargs)
            except Exception as error:
                outage = unavailable(error, outcome)
                if outage is None or outage is error:
                    raise
                raise outage from error

        return translated

    return wrap


@contextlib.asynccontextmanager
async def waiting_at_most(seconds: float, dependency: Dependency,
                          outcome: str | None = None) -> AsyncIterator[None]:
    """Give up on ``dependency`` after ``seconds`` (its client would retry for longer, holding
    the request): the block's timeout is that dependency's outage."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as error:
        raise DependencyUnavailable(dependency, outcome) from error
