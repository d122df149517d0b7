"""Logs and the audit trail never carry what a caller searched for, a value that was refused or
a secret: errors say what was wrong, not the value; reasons and audit details are redacted;
uvicorn's access log keeps paths, not query strings."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
from mcp import Client

from team_memory import embedded
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.pool import tenant_tx
from tests.conftest import Stack
from tests.mcp_server.test_tools import call, call_error
from tests.processes import child_env, team_memory
from tests.support.secret_corpus import SECRETS

pytestmark = pytest.mark.anyio

MARK = "quokkazebra7781"  # a value callers send that must appear nowhere
GITHUB = next(case.secret for case in SECRETS if case.name == "github_classic_pat")


async def audit_text(stack: Stack) -> str:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        return str(await conn.fetchval(
            "SELECT string_agg(action || ' ' || outcome || ' ' || detail::text, E'\\n')"
            " FROM audit_log"))


async def test_refused_values_are_not_echoed_to_the_audit_trail_or_the_log(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Client(stack.server) as client:
        errors = [
            await call_error(client, "save_memory", content="ok", tags=["ok", f"bad tag {MARK}!"]),
            await call_error(client, "save_memory", content="ok", category=f"gossip-{MARK}"),
            await call_error(client, "save_memory", content="ok", category=GITHUB),
            await call_error(client, "search_memory", query=f"{MARK}\x00"),
            await call_error(client, "search_memory", query=MARK * 1000),
            await call_error(client, "search_memory", query="fine", tags=[f"{MARK} !"]),
            await call_error(client, "search_memory", query="fine", category=MARK),
        ]
    assert "tag 2 of 2 must be" in errors[0] and "unknown category" in errors[1]
    assert "NUL" in errors[3] and "longer than" in errors[4]
    audit = await audit_text(stack)
    assert audit.count("save rejected") == 3  # refused writes are audited, values are not
    assert "tag 2 of 2" in audit
    for text in (*errors, audit, caplog.text):
        assert MARK not in text and GITHUB not in text
    assert "Tool 'save_memory' failed" in caplog.text  # the log does record the refusals


async def test_every_text_in_an_audit_detail_is_redacted(stack: Stack) -> None:
    async with tenant_tx(stack.pool, stack.principal.tenant_id) as conn:
        await insert_audit(
            conn, tenant_id=stack.principal.tenant_id, key_id=None, actor="test",
            action="note", outcome="ok",
            detail={"error": f"bad key {GITHUB}", "seen": [GITHUB, 3], "deep": {"x": GITHUB}})
    audit = await audit_text(stack)
    assert GITHUB not in audit and audit.count("[REDACTED:github_token]") == 3


async def test_forget_and_purge_reasons_are_redacted(running: Stack) -> None:
    async with Client(running.server) as client:
        saved = await call(client, "save_memory", content="Reasons are stored in history")
        await call(client, "forget_memory", id=saved["id"], reason=f"leaked {GITHUB} here")
        forgotten = await call(client, "memory_status", id=saved["id"])
        await call(client, "purge_memory", id=saved["id"], reason=f"really: {GITHUB}")
        purged = await call(client, "memory_status", id=saved["id"])
    assert forgotten["history"][-1]["reason"] == "leaked [REDACTED:github_token] here"
    assert purged["history"][-1]["reason"] == "really: [REDACTED:github_token]"
    assert GITHUB not in str([forgotten, purged]) and GITHUB not in await audit_text(running)


def _wait_healthy(base: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"serve never answered /healthz: {log.read_text()[-2000:]}")


async def test_the_access_log_keeps_paths_without_query_strings(
    running: Stack, tmp_path: Path
) -> None:
    port = embedded.free_port()
    settings = running.settings.model_copy(update={"mcp_port": port})
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as output, team_memory(
            "serve", env=child_env(settings, TEAM_MEMORY_LOG_LEVEL="INFO"), output=output):
        await asyncio.to_thread(_wait_healthy, base, log)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            auth = {"Authorization": f"Bearer {running.api_key}"}
            found = await http.get("/api/search", params={"q": f"{MARK} {GITHUB}"},
                                   headers=auth)
            refused = await http.get("/api/search", params={"q": MARK, "limit": "0"},
                                     headers=auth)
            probe = await http.get("/healthz", params={"probe": MARK})
    assert (found.status_code, refused.status_code, probe.status_code) == (200, 400, 200)
    text = log.read_text()
    assert '"GET /api/search HTTP/1.1" 200' in text and '"GET /api/search HTTP/1.1" 400' in text
    assert '"GET /healthz HTTP/1.1" 200' in text
    assert MARK not in text and GITHUB not in text and "q=" not in text
