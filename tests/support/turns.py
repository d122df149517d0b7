"""Turns between the suite's parallel workers (pytest-xdist): a test marked ``alone`` runs while
no other test runs, because what it checks is a time bound (a restart within 15 s, a search's
p99 while 16 clients save) that the other workers' load would measure instead.

A readers-writer lock over two lock files shared by the run's workers: every test holds the
shared lock, an ``alone`` test the exclusive one. The turnstile gives the waiting ``alone``
test precedence: flock wakes waiters in no order, so without it a stream of ordinary tests
could keep the exclusive lock out. Without xdist there is no other worker and no lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest


def lock_dir(config: pytest.Config) -> Path | None:
    """The run's base temp dir, which its workers share (each has its own below it)."""
    if not hasattr(config, "workerinput") or config.option.basetemp is None:
        return None
    return Path(config.option.basetemp).parent


@contextmanager
def _flock(path: Path, operation: int) -> Iterator[IO[bytes]]:
    with path.open("ab") as handle:
        fcntl.flock(handle, operation)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def turn(directory: Path | None, *, alone: bool) -> Iterator[None]:
    """Hold this test's turn: shared with the other workers' tests, or ``alone``."""
    if directory is None:
        yield
        return
    turnstile, running = directory / "turnstile", directory / "running"
    if alone:
        with _flock(turnstile, fcntl.LOCK_EX), _flock(running, fcntl.LOCK_EX):
            yield
        return
    with _flock(turnstile, fcntl.LOCK_EX):
        pass  # waits while an `alone` test waits or runs
    with _flock(running, fcntl.LOCK_SH):
        yield
