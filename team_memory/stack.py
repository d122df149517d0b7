"""`team-memory up`: supervises the embedded stack as child processes and stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from pgserver.utils import PostmasterInfo

from team_memory import embedded
from team_memory.supervisor import STATE_FILE, Child, CrashLoop, Supervisor, log
from team_memory_core.hook_protocol import LOCAL_KEY_FILE
from team_memory_core.settings import Settings
from team_memory_core.store.consolidation import register_project
from team_memory_core.store.migrate import migrate
from team_memory_core.store.pool import create_pool, tenant_tx
from team_memory_core.tenants import (
    authenticate,
    create_key,
    ensure_member,
    ensure_tenant,
    local_member_name,
)

LOCAL_TENANT = "local"


def run_stack(settings: Settings) -> int:
    """Run until Ctrl-C/SIGTERM (0), restarting children that die, or until one of them is
    in a crash loop (1)."""
    # Whatever the stack and its children create (database files, logs, keys) is private.
    os.umask(0o077)
    embedded.lock_down(settings.data_dir)
    with ExitStack() as cleanup:
        cleanup.enter_context(embedded.data_dir_lock(settings.data_dir))
        database = cleanup.enter_context(embedded.database(settings))
        children: list[Child] = []
        # Registered after the database: runs before it stops, so every child stops first.
        cleanup.callback(_stop_all, children)
        if database.embedded is not None:
            children.append(_postgres_child(database.embedded))
        api_key = asyncio.run(_prepare_database(settings, database.admin_url))
        _temporal(settings, cleanup, children)
        env = {
            "DATABASE_URL": database.app_url,
            "TEMPORAL_ADDRESS": settings.temporal_target,
            "TEAM_MEMORY_DATA_DIR": str(settings.data_dir),
            "TEAM_MEMORY_MCP_PORT": str(settings.mcp_port),
            "TEAM_MEMORY_MCP_HOST": settings.mcp_host,
        }
        children.append(_team_memory_child("the worker", ["worker"], env))
        server = _team_memory_child("the MCP server", ["serve", "--transport", "http"], env)
        children.append(server)
        assert isinstance(server.process, subprocess.Popen)
        embedded.wait_for_port(settings.mcp_port, 120, server.process, "the MCP server")
        print(_banner(settings, api_key), flush=True)
        supervisor = Supervisor(children, settings.data_dir / STATE_FILE)
        supervisor.write_state()
        return _supervise(supervisor)
    return 0


@dataclass
class _Postgres:
    """The embedded PostgreSQL as a child: pg_ctl daemonizes it, so it is watched through its
    postmaster.pid."""

    postgres: embedded.EmbeddedPostgres

    def poll(self) -> int | None:
        info = PostmasterInfo.read_from_pgdata(self.postgres.data_dir)
        return None if info is not None and info.is_running() else 1


def _postgres_child(postgres: embedded.EmbeddedPostgres) -> Child:
    def restart() -> _Postgres:
        postgres.server.ensure_postgres_running()
        return _Postgres(postgres)

    return Child("PostgreSQL", restart, _Postgres(postgres))


def _temporal(settings: Settings, cleanup: ExitStack, children: list[Child]) -> None:
    if not settings.embedded_temporal:
        return
    log = (settings.data_dir / "temporal.log").open("ab")
    cleanup.callback(log.close)

    def start() -> subprocess.Popen[bytes]:
        return embedded.start_temporal(
            db_file=settings.data_dir / "temporal.db", port=settings.temporal_port,
            ui_port=settings.temporal_ui_port, namespace=settings.temporal_namespace,
            log_file=log, ui_codec_endpoint=settings.codec_url, nice=settings.background_nice,
        )

    children.append(Child("the Temporal server", start, start()))


def _stop_all(children: list[Child]) -> None:
    """Stop the children in reverse start order (the MCP server and worker before the
    services they use; the embedded PostgreSQL stops with embedded.database, right after)."""
    for child in reversed(children):
        if isinstance(child.process, subprocess.Popen):
            embedded.stop_process(child.process, 30)


async def _prepare_database(settings: Settings, admin_url: str) -> str:
    """Migrate, and make sure the local tenant has a key (kept in the data dir, mode 0600)."""
    await migrate(admin_url, settings)
    key_file = settings.data_dir / LOCAL_KEY_FILE
    pool = await create_pool(admin_url, min_size=1, max_size=2)
    try:
        tenant_id = await ensure_tenant(pool, LOCAL_TENANT)
        # The default project gets its nightly consolidation schedule when the worker starts.
        async with tenant_tx(pool, tenant_id) as conn:
            await register_project(conn, tenant_id, settings.project)
        if key_file.exists():
            existing = key_file.read_text().strip()
            if await authenticate(pool, existing) is not None:
                return existing
        # The local key's member: whoever runs the stack (their personal memories).
        await ensure_member(pool, LOCAL_TENANT, local_member_name())
        issued = await create_key(pool, LOCAL_TENANT, name="local-user",
                                  member=local_member_name())
    finally:
        await pool.close()
    _write_secret(key_file, issued.secret)
    return issued.secret


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")


def _team_memory_child(name: str, args: list[str], env: dict[str, str]) -> Child:
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "team_memory", *args],
                                env={**os.environ, **env})

    return Child(name, start, start())


def _supervise(supervisor: Supervisor) -> int:
    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    while not stop:
        try:
            supervisor.check()
        except CrashLoop as error:
            log(f"{error}; stopping")
            return 1
        time.sleep(0.2)
    log("stopping")
    return 0


def _policy(settings: Settings) -> str:
    if settings.dedupe_policy == "haiku":
        return f"haiku ({settings.llm_model}: merge, supersede, manifesto)"
    return "local (no ANTHROPIC_API_KEY: exact and near duplicates only)"


def _banner(settings: Settings, api_key: str) -> str:
    ui = (f"http://127.0.0.1:{settings.temporal_ui_port}" if settings.embedded_temporal
          else "(external Temporal: see its Web UI)")
    return "\n".join([
        "",
        "Team Memory is up.",
        f"  MCP endpoint      {settings.mcp_url}",
        f"  Temporal UI       {ui}",
        f"  Temporal codec    {settings.codec_url} (UI: sign in at /codec/login)",
        f"  Temporal address  {settings.temporal_target}",
        f"  Data dir          {settings.data_dir}",
        f"  Embedding model   {settings.embedding_model} ({settings.embedding_provider})",
        f"  Dedupe policy     {_policy(settings)}",
        f"  Consolidation     nightly at {settings.consolidation_time} "
        f"{settings.consolidation_timezone} (temporal schedule list)",
        f"  Tenant / API key  {LOCAL_TENANT} / {api_key}",
        "",
        "Connect Claude Code (each repository is its own project):",
        "  ./team-memory install claude-code      then, in a repository: team-memory doctor",
        "",
        "Ctrl-C stops everything.",
        "",
    ])
