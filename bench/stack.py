"""The stack under test: `team-memory up` in a subprocess on a temporary data dir and free ports."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil
from pgserver.utils import PostmasterInfo
from temporalio.client import Client

from mcp_server.memories import MemoryService
from team_memory.embedded import free_port, wait_for_port
from team_memory_core.embedder import LocalEmbedder
from team_memory_core.models.principal import Principal
from team_memory_core.settings import Settings
from team_memory_core.store.migrate import APP_ROLE
from team_memory_core.store.pool import create_pool
from team_memory_core.temporal import connect
from team_memory_core.tenants import authenticate

_ENV_DROP = ("DATABASE_URL", "DATABASE_ADMIN_URL", "TEMPORAL_ADDRESS", "ANTHROPIC_API_KEY",
             "TEAM_MEMORY_ANTHROPIC_API_KEY", "TEAM_MEMORY_DATABASE_URL")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment for a stack under test; the per-key rate limit is off (the
    benchmark's clients share one key and measure throughput, not the limiter)."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env["TEAM_MEMORY_RATE_LIMIT_PER_MINUTE"] = "0"
    env.update(extra)
    return env


@dataclass
class BenchStack:
    """A running `team-memory up`, its URLs, key and processes."""

    root: Path
    process: subprocess.Popen[bytes]
    mcp_port: int
    temporal_port: int
    log: Path
    api_key: str = ""
    children: dict[str, psutil.Process] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def mcp_url(self) -> str:
        return f"http://127.0.0.1:{self.mcp_port}/mcp"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def postgres_url(self, user: str = "postgres") -> str:
        info = PostmasterInfo.read_from_pgdata(self.data_dir / "pg")
        assert info is not None, "PostgreSQL is not running"
        return info.get_uri(user=user, database="postgres")

    @property
    def app_url(self) -> str:
        return self.postgres_url(APP_ROLE)

    def child_env(self) -> dict[str, str]:
        """What `up` gives its children: enough to start another server beside them."""
        return clean_env(DATABASE_URL=self.app_url, TEMPORAL_ADDRESS=self.temporal_address,
                         TEAM_MEMORY_DATA_DIR=str(self.data_dir))

    def rss_mib(self, role: str) -> float:
        return float(self.children[role].memory_info().rss) / 2**20

    def postmaster_pid(self) -> int:
        """PostgreSQL's postmaster (pg_ctl detaches it from `up`; its backends are its children)."""
        info = PostmasterInfo.read_from_pgdata(self.data_dir / "pg")
        assert info is not None and info.pid is not None, "PostgreSQL is not running"
        return int(info.pid)

    def stop(self) -> None:
        """SIGTERM (`up` stops its children in order), then SIGKILL whatever of its process
        group is left: `up` runs in a session of its own, so nothing it started survives."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_stack(root: Path | None = None, **env: str) -> BenchStack:
    """`team-memory up` on ``root`` (default: a new temp dir), with ``env`` added to the
    caller's environment (e.g. ANTHROPIC_BASE_URL for a scripted model)."""
    root = root or Path(tempfile.mkdtemp(prefix="team-memory-bench-"))
    mcp_port, temporal_port = free_port(), free_port()
    log = root / "up.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "team_memory", "up", "--data-dir", str(root / "data"),
             "--mcp-port", str(mcp_port), "--temporal-port", str(temporal_port),
             "--temporal-ui-port", str(free_port())],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=clean_env(TEAM_MEMORY_LOG_LEVEL="WARNING", **env),
        )
    stack = BenchStack(root, process, mcp_port, temporal_port, log)
    try:
        _wait_ready(stack)
    except BaseException:
        stack.stop()
        raise
    stack.api_key = (stack.data_dir / "local-api-key").read_text().strip()
    for child in psutil.Process(process.pid).children():
        args = child.cmdline()
        if "worker" in args:
            stack.children["worker"] = child
        elif "serve" in args:
            stack.children["mcp"] = child
        elif "start-dev" in args:
            stack.children["temporal"] = child
    return stack


@contextlib.contextmanager
def fresh_stack(**env: str) -> Iterator[BenchStack]:
    """`start_stack` on a new temp dir, stopped and removed when the block ends."""
    stack = start_stack(None, **env)
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(stack.root, ignore_errors=True)


def _wait_ready(stack: BenchStack) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            raise RuntimeError(f"`team-memory up` exited:\n{stack.log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{stack.mcp_port}/readyz", timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"`team-memory up` not ready in 180 s:\n{stack.log.read_text()}")


def bytecode_cached() -> bool:
    """Whether the server's dependencies have .pyc files: without them (PYTHONDONTWRITEBYTECODE
    and a venv installed without --compile-bytecode) every start compiles every module."""
    import mcp_types

    cached = importlib.util.cache_from_source(mcp_types.__file__ or "")
    return Path(cached).exists()


def time_serve_startup(stack: BenchStack) -> float:
    """Seconds from spawning `team-memory serve` to its HTTP port accepting (model loaded)."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "team_memory", "serve", "--transport", "http",
         "--mcp-port", str(port)],
        env=stack.child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 60, process, "team-memory serve")
        return time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@dataclass
class InProcess:
    """The stack's services driven from this process (the local tenant's principal)."""

    service: MemoryService
    principal: Principal

    @property
    def pool(self) -> asyncpg.Pool:
        return self.service.pool

    @property
    def client(self) -> Client:
        return self.service.temporal


async def in_process(stack: BenchStack) -> InProcess:
    settings = Settings(data_dir=stack.data_dir, database_url=stack.app_url,
                        temporal_address=stack.temporal_address)
    pool = await create_pool(stack.app_url, min_size=2, max_size=4)
    client = await connect(settings, pool)
    service = MemoryService(settings=settings, pool=pool, temporal=client,
                            embedder=LocalEmbedder(stack.data_dir / "models",
                                                   settings.embedding_model))
    principal = await authenticate(pool, stack.api_key)
    assert principal is not None
    return InProcess(service, principal)
