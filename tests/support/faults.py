"""Services of a test's own, to stop and start: the session ones are shared by every other test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio

from team_memory import embedded
from team_memory_core.settings import Settings
from team_memory_core.store.migrate import migrate
from tests.conftest import Services


@asynccontextmanager
async def dedicated_postgres(
    services: Services,
) -> AsyncIterator[tuple[embedded.EmbeddedPostgres, Settings]]:
    """A migrated PostgreSQL of its own, and settings pointing at it.

    Outside pytest's private temp root, which a concurrent pytest run may chmod back to 0700
    while pg_ctl (running as pgserver's own system user) still needs to traverse it.
    """
    root = Path(tempfile.mkdtemp(prefix="team-memory-pg-outage-"))
    os.chmod(root, 0o755)
    postgres = await anyio.to_thread.run_sync(embedded.start_postgres, root / "pg")
    try:
        settings = services.settings(database_url=postgres.app_url,
                                     database_admin_url=postgres.admin_url)
        await migrate(postgres.admin_url, settings)
        yield postgres, settings
    finally:
        await anyio.to_thread.run_sync(postgres.stop)
        shutil.rmtree(root, ignore_errors=True)


class DedicatedTemporal:
    """A Temporal dev server persisting to a file: stopped and started again on one port, it
    comes back with its workflows."""

    def __init__(self, directory: Path) -> None:
        self.port = embedded.free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._db = directory / "temporal.db"
        self._log = directory / "temporal.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = embedded.start_temporal(db_file=self._db, port=self.port,
                                                    ui_port=None, log_file=log)

    def stop(self) -> None:
        if self._process is not None:
            embedded.stop_process(self._process)
            self._process = None


@contextmanager
def dedicated_temporal(directory: Path) -> Iterator[DedicatedTemporal]:
    server = DedicatedTemporal(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
