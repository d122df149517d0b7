"""Services of a test's own, to stop and start: the session ones are shared by every other test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
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
        self._db = directory / "temporal.db"
        self._log = directory / "temporal.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (again) on this server's port; a failure says how its log ends."""
        with self._log.open("ab") as log:
            try:
                self._process = embedded.start_temporal(db_file=self._db, port=self.port,
                                                        ui_port=None, log_file=log)
            except embedded.StackError as error:
                raise embedded.StackError(f"{error}; its log ends:\n{self.log_tail()}") from error

    def start_first(self, attempts: int = 3) -> None:
        """The first start, on a new port for each attempt: the port and the ones the server
        picks for itself are free when chosen, and another process can take one before the
        server binds it (CI once saw the server exit with code 2 while starting)."""
        for attempt in range(1, attempts + 1):
            try:
                self.start()
                return
            except embedded.StackError as error:
                if attempt == attempts:
                    raise
                warnings.warn(f"the dedicated Temporal dev server did not start, retrying on "
                              f"a new port: {error}", stacklevel=2)
                self.port = embedded.free_port()
                for leftover in self._db.parent.glob(self._db.name + "*"):
                    leftover.unlink()  # nothing was started on it: a clean file per attempt

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self._process is not None:
            embedded.stop_process(self._process)
            self._process = None


@contextmanager
def dedicated_temporal(directory: Path) -> Iterator[DedicatedTemporal]:
    server = DedicatedTemporal(directory)
    server.start_first()
    try:
        yield server
    finally:
        server.stop()
