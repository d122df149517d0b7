"""`team-memory up`: supervises the embedded stack as child processes and stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from team_memory import embedded
from team_memory_core.settings import Settings
from team_memory_core.store.consolidation import register_project
from team_memory_core.store.migrate import migrate
from team_memory_core.store.pool import create_pool, tenant_tx
from team_memory_core.tenants import authenticate, create_key, ensure_tenant

LOCAL_TENANT = "local"


def run_stack(settings: Settings) -> int:
    """Run until Ctrl-C/SIGTERM (0) or until a child dies (its exit code)."""
    # Whatever the stack and its children create (database files, logs, keys) is private.
    os.umask(0o077)
    embedded.lock_down(settings.data_dir)
    with ExitStack() as cleanup:
        cleanup.enter_context(embedded.data_dir_lock(settings.data_dir))
        admin_url, app_url = _database(settings, cleanup)
        api_key = asyncio.run(_prepare_database(settings, admin_url))
        temporal_address = _temporal(settings, cleanup)
        env = {
            "DATABASE_URL": app_url,
            "TEMPORAL_ADDRESS": temporal_address,
            "TEAM_MEMORY_DATA_DIR": str(settings.data_dir),
            "TEAM_MEMORY_MCP_PORT": str(settings.mcp_port),
            "TEAM_MEMORY_MCP_HOST": settings.mcp_host,
        }
        children = {
            "the worker": _child(["worker"], env, cleanup),
            "the MCP server": _child(["serve", "--transport", "http"], env, cleanup),
        }
        embedded.wait_for_port(settings.mcp_port, 120, children["the MCP server"],
                               "the MCP server")
        print(_banner(settings, api_key), flush=True)
        return _wait_for_signal(children)
    return 0


def _database(settings: Settings, cleanup: ExitStack) -> tuple[str, str]:
    if not settings.embedded_postgres:
        assert settings.database_url is not None
        return settings.database_admin_url or settings.database_url, settings.database_url
    postgres = embedded.start_postgres(settings.data_dir / "pg")
    cleanup.callback(postgres.stop)
    return postgres.admin_url, postgres.app_url


def _temporal(settings: Settings, cleanup: ExitStack) -> str:
    if not settings.embedded_temporal:
        return settings.temporal_target
    log = (settings.data_dir / "temporal.log").open("ab")
    cleanup.callback(log.close)
    process = embedded.start_temporal(
        db_file=settings.data_dir / "temporal.db", port=settings.temporal_port,
        ui_port=settings.temporal_ui_port, namespace=settings.temporal_namespace, log_file=log,
        ui_codec_endpoint=settings.codec_url,
    )
    cleanup.callback(embedded.stop_process, process)
    return settings.temporal_target


async def _prepare_database(settings: Settings, admin_url: str) -> str:
    """Migrate, and make sure the local tenant has a key (kept in the data dir, mode 0600)."""
    await migrate(admin_url, settings)
    key_file = settings.data_dir / "local-api-key"
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
        issued = await create_key(pool, LOCAL_TENANT, name="local-user")
    finally:
        await pool.close()
    _write_secret(key_file, issued.secret)
    return issued.secret


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")


def _child(args: list[str], env: dict[str, str], cleanup: ExitStack) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "team_memory", *args],
                               env={**os.environ, **env})
    cleanup.callback(embedded.stop_process, process, 30)
    return process


def _wait_for_signal(children: dict[str, subprocess.Popen[bytes]]) -> int:
    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    while not stop:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"team-memory up: {name} exited ({child.returncode}); stopping",
                      file=sys.stderr, flush=True)
                return child.returncode or 1
        time.sleep(0.2)
    print("team-memory up: stopping", file=sys.stderr, flush=True)
    return 0


def _policy(settings: Settings) -> str:
    if settings.dedupe_policy == "haiku":
        return f"haiku ({settings.llm_model}: merge, supersede, manifesto)"
    return "local (no ANTHROPIC_API_KEY: exact and near duplicates only)"


def _banner(settings: Settings, api_key: str) -> str:
    add = (f"claude mcp add --transport http team-memory {settings.mcp_url} "
           f"--header {shlex.quote('Authorization: Bearer ' + api_key)}")
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
        "Connect Claude Code:",
        f"  {add}",
        "",
        "Ctrl-C stops everything.",
        "",
    ])
