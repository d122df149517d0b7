"""JSONL import/export through the ingestion workflows, and the CLI commands around them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mcp_server.transfer import ImportFailed, ImportItem, export_lines, import_items, parse_jsonl
from team_memory_core.models.memories import MemoryStatus
from tests.conftest import Services, Stack

pytestmark = pytest.mark.anyio

ROUND_TRIP_FIELDS = ("content", "category", "importance", "tags", "occurred_at", "source")


def sample_items(count: int) -> list[ImportItem]:
    start = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    categories = ["architecture", "preference", "bugfix", "business_rule", "general"]
    return [
        ImportItem(content=f"Decision {i}: service {i} talks to queue {i * 7} over gRPC",
                   category=categories[i % 5], importance=1 + i % 5,
                   tags=sorted({f"svc{i % 3}", "imported"}),
                   occurred_at=start + timedelta(hours=i), source=f"ticket-{i}")
        for i in range(count)
    ]


async def exported(stack: Stack, project: str) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in export_lines(stack.service, stack.principal,
                                                             project)]


def comparable(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(line[f] for f in ROUND_TRIP_FIELDS) for line in lines]


async def test_export_then_import_round_trips_without_loss(running: Stack) -> None:
    seen: list[tuple[str, int, int]] = []
    report = await import_items(running.service, running.principal, sample_items(25), "alpha",
                                progress=lambda *p: seen.append(p))
    assert (report.saved, report.already_saved, report.pending) == (25, 0, 0)
    assert seen[-1] == ("committed", 25, 25)
    first = await exported(running, "alpha")
    assert [line["source"] for line in first] == [f"ticket-{i}" for i in range(25)]
    assert {line["status"] for line in first} == {MemoryStatus.ACTIVE.value}
    again = parse_jsonl(json.dumps(line) for line in first)
    await import_items(running.service, running.principal, again, "beta")
    second = await exported(running, "beta")
    assert comparable(second) == comparable(first)
    assert first[0]["occurred_at"] == "2024-03-01T09:30:00+00:00"


async def test_a_bad_line_imports_nothing(stack: Stack) -> None:
    lines = [json.dumps({"content": "fine"}), "{not json", json.dumps({"content": "x",
                                                                      "importance": 9})]
    with pytest.raises(ImportFailed, match="line 2"):
        parse_jsonl(lines)
    items = parse_jsonl([lines[0], lines[2]])
    with pytest.raises(ImportFailed, match="item 2: importance"):
        await import_items(stack.service, stack.principal, items, "gamma")
    assert await exported(stack, "gamma") == []


async def test_anchors_travel_with_their_memories(running: Stack) -> None:
    blob = "3" * 40
    items = parse_jsonl([
        json.dumps({"content": "parse_invoice returns cents",
                    "files": ["billing/parse.py", {"path": "billing/money.py", "blob": blob}]}),
        json.dumps({"content": "Invoices are kept ten years"})])
    await import_items(running.service, running.principal, items, "delta")
    first = await exported(running, "delta")
    assert first[0]["files"] == [{"path": "billing/money.py", "blob": blob},
                                 {"path": "billing/parse.py", "blob": None}]
    assert first[0]["freshness"] == "fresh" and "files" not in first[1]
    await import_items(running.service, running.principal,
                       parse_jsonl(json.dumps(line) for line in first), "epsilon")
    assert [line.get("files") for line in await exported(running, "epsilon")] == \
        [line.get("files") for line in first]


async def test_a_bad_file_imports_nothing(stack: Stack) -> None:
    items = parse_jsonl([json.dumps({"content": "fine", "files": ["src/a.py"]}),
                         json.dumps({"content": "wrong", "files": ["/etc/passwd"]}),
                         json.dumps({"content": "bad hash", "files": [
                             {"path": "a.py", "blob": "not-a-hash"}]})])
    with pytest.raises(ImportFailed, match=r"item 2: file 1 of 1: .*relative") as failed:
        await import_items(stack.service, stack.principal, items, "zeta")
    assert "item 3: file 1 of 1: blob must be a git blob hash" in str(failed.value)
    assert await exported(stack, "zeta") == []


def _cli_env(services: Services, stack: Stack) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": services.postgres.app_url,
            "DATABASE_ADMIN_URL": services.postgres.admin_url,
            "TEMPORAL_ADDRESS": stack.settings.temporal_target,
            "TEAM_MEMORY_TASK_QUEUE": stack.settings.task_queue,
            "TEAM_MEMORY_DATA_DIR": str(services.data_dir)}


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "team_memory", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_import_shows_progress_and_export_writes_jsonl(
    services: Services, running: Stack, tmp_path: Path, admin_pool: asyncpg.Pool,
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(item.model_dump_json() for item in sample_items(12)))
    env = _cli_env(services, running)
    tenant = running.principal.tenant_name
    code, out, err = await run_cli(env, "import", str(source), "--project", "cli",
                                   "--tenant", tenant)
    assert code == 0, err
    assert "committed" in out and "12/12" in out
    assert "imported 12 new" in out
    target = tmp_path / "out.jsonl"
    code, _, err = await run_cli(env, "export", "--project", "cli", "--tenant", tenant,
                                 "-o", str(target))
    assert code == 0, err
    assert "exported 12 memories" in err
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["source"] for line in lines] == [f"ticket-{i}" for i in range(12)]
    async with admin_pool.acquire() as conn:
        audit = await conn.fetch("SELECT actor, key_id, action, target FROM audit_log"
                                 " WHERE tenant_id = $1 ORDER BY id",
                                 running.principal.tenant_id)
    done = [(r["action"], r["actor"].startswith("operator:"), r["key_id"]) for r in audit]
    assert done.count(("save", True, None)) == 12  # the operator, not "mcp" without a key
    assert [(r["target"], r["actor"].startswith("operator:")) for r in audit
            if r["action"] == "export"] == [("cli", True)]


async def test_export_by_a_key_is_audited(running: Stack, admin_pool: asyncpg.Pool) -> None:
    await running.service.save(running.principal, "Exports are audited", project="audit")
    assert len(await exported(running, "audit")) == 1
    async with admin_pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM audit_log WHERE tenant_id = $1"
                                  " AND action = 'export'", running.principal.tenant_id)
    assert (row["actor"], row["key_id"], row["target"], row["outcome"]) == (
        "mcp", running.principal.key_id, "audit", "ok")
