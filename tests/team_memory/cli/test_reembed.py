"""`team-memory reembed` as an operator runs it: a real process, on a database of its own (the
switch changes the model of the whole database), with a worker serving its task queue."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import anyio
import pytest

from team_memory_core.embedder import Embedder
from tests.conftest import Services
from tests.support.reembed import OwnDatabase, own_database
from workflows.worker import running_worker

pytestmark = pytest.mark.anyio


def _env(db: OwnDatabase) -> dict[str, str]:
    settings = db.settings
    return {**os.environ, "DATABASE_URL": settings.database_url or "",
            "DATABASE_ADMIN_URL": settings.database_admin_url or "",
            "TEMPORAL_ADDRESS": settings.temporal_target,
            "TEAM_MEMORY_TASK_QUEUE": settings.task_queue,
            "TEAM_MEMORY_DATA_DIR": str(settings.data_dir)}


async def _cli(db: OwnDatabase, *args: str) -> tuple[int, str]:
    """The command in a process of its own, while this event loop (the worker) goes on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "team_memory", *args, env=_env(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    with anyio.fail_after(180):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_reembed_runs_to_the_end_and_status_says_so(services: Services,
                                                         embedder: Embedder) -> None:
    async with own_database(services) as db:
        principal = await db.tenant()
        await db.seed(principal, embedder, 0, 30)
        async with running_worker(db.client, db.settings, db.pool, embedder, None):
            code, output = await _cli(db, "reembed", "--model",
                                      "sentence-transformers/all-MiniLM-L6-v2", "--dim", "96",
                                      "--page-size", "10")
            assert code == 0, output
            assert "re-embed completed: done, 30/30 memories with local:" in output
            code, status = await _cli(db, "reembed", "status")
            # The same model by another of its names is the model in use, not a new one.
            again, refused = await _cli(db, "reembed", "--model", "minilm", "--dim", "96")
        assert code == 0, status
        assert again != 0 and "the database already uses local/sentence-transformers/" \
            "all-MiniLM-L6-v2" in refused, refused
        assert "generation 1: local:sentence-transformers/all-MiniLM-L6-v2 (96 dimensions)" \
            " active" in status
        assert "generation 0: local:all-MiniLM-L6-v2-dynamic-int8 (384 dimensions) retired" \
            in status
        assert await db.embedding_column() == ["embedding vector(96)"]


def test_a_model_the_embedder_cannot_load_is_refused_before_anything_starts() -> None:
    for args, said in [
        (["--model", "BAAI/bge-small-en-v1.5"],
         "the local provider has no model 'BAAI/bge-small-en-v1.5'"),
        (["--model", "sentence-transformers/all-MiniLM-L6-v2", "--dim", "512"],
         "can be truncated to fewer, not widened to 512"),
        (["--provider", "openai", "--model", "text-embedding-3-small"], "--dim is required"),
    ]:
        # No database or Temporal is named: the command must stop before it needs them.
        done = subprocess.run([sys.executable, "-m", "team_memory", "reembed", *args],
                              capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "DATABASE_URL": "postgresql://nowhere.invalid/x",
                                   "TEMPORAL_ADDRESS": "127.0.0.1:1"})
        assert done.returncode == 1 and said in done.stderr, (args, done.stderr)
