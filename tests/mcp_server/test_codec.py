"""The codec endpoint: authorised operators decode their tenant's Temporal payloads, with the
real `temporal` CLI and as the Web UI calls it (CORS, cookie), and nobody else does."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import WorkflowHistory

from mcp_server.codec import COOKIE
from mcp_server.memories import MemoryService
from team_memory import embedded
from team_memory_core.contract import capture_workflow_id
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.outbox import OutboxRelay
from team_memory_core.settings import Settings
from team_memory_core.temporal import connect
from team_memory_core.tenants import create_key
from tests.conftest import Stack, new_member, new_tenant
from tests.mcp_server.test_capture import SESSION, serving
from tests.mcp_server.test_http import HttpServer, http_server
from tests.support.anthropic_server import FakeAnthropic
from tests.support.http import serving_service
from tests.temporal_cli import readable, show

__all__ = ["http_server"]  # the fixture, imported for these tests

pytestmark = pytest.mark.anyio

MARKER = "platypusledger"
TEXT = f"Refunds over 500 EUR need a second approver ({MARKER})"


async def saved_history(running: Stack, text: str = TEXT) -> tuple[str, dict[str, Any]]:
    """(workflow id, the JSON body a codec client sends for its input payloads)."""
    saved = await running.service.save(running.principal, text)
    assert await running.wait_status(saved.id) is MemoryStatus.ACTIVE
    history = await running.client.get_workflow_handle(saved.workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    return saved.workflow_id, json_format.MessageToDict(Payloads(payloads=started.input.payloads))


async def shown_with(running: Stack, server: HttpServer, workflow_id: str,
                     auth: str | None) -> tuple[int, str]:
    extra = ["--codec-endpoint", f"{server.base}/codec", "--command-timeout", "10s"]
    extra += ["--codec-auth", auth] if auth else []
    done = await asyncio.to_thread(show, running.settings.temporal_target, workflow_id, *extra)
    return done.returncode, done.stdout + done.stderr


async def test_the_temporal_cli_decodes_with_a_key_of_the_tenant_only(
    running: Stack, http_server: HttpServer, admin_pool: asyncpg.Pool
) -> None:
    workflow_id, _ = await saved_history(running)
    code, out = await shown_with(running, http_server, workflow_id, f"Bearer {running.api_key}")
    assert code == 0 and readable(out, [MARKER]) == [MARKER], out[-2000:]

    _, other_key = await new_tenant(admin_pool)
    code, out = await shown_with(running, http_server, workflow_id, f"Bearer {other_key}")
    assert code == 0 and readable(out, [MARKER]) == []  # another tenant's: left sealed
    for auth in ("Bearer tm_not-a-key", None):  # 401: the CLI gives up, printing nothing
        code, out = await shown_with(running, http_server, workflow_id, auth)
        assert code != 0 and MARKER not in out, out[-500:]

    async with admin_pool.acquire() as conn:
        audited = await conn.fetch(
            "SELECT key_id, detail FROM audit_log WHERE tenant_id = $1 AND action = "
            "'temporal.decode'", running.principal.tenant_id)
    # One row per request that decoded something (the CLI sends one per payload), all by the
    # key that could; none for the other tenant's key, which decoded nothing.
    assert audited and {row["key_id"] for row in audited} == {running.principal.key_id}


async def test_a_personal_memorys_payloads_decode_for_its_member_only(
    running: Stack, http_server: HttpServer, admin_pool: asyncpg.Pool
) -> None:
    saved = await running.service.save(running.principal, TEXT, scope="personal")
    assert await running.wait_status(saved.id) is MemoryStatus.ACTIVE
    assert "/personal/" in saved.workflow_id
    history = await running.client.get_workflow_handle(saved.workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    body = json_format.MessageToDict(Payloads(payloads=started.input.payloads))
    _, colleague = await new_member(admin_pool, running.principal, "bob")
    decoded = {}
    async with httpx.AsyncClient(base_url=http_server.base) as http:
        for who, key in (("author", running.api_key), ("colleague", colleague)):
            answer = await http.post("/codec/decode", json=body,
                                     headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200
            decoded[who] = answer.text
    assert MARKER in readable_payloads(decoded["author"])
    assert MARKER not in readable_payloads(decoded["colleague"])  # left sealed


async def test_a_claude_code_sessions_hook_text_decodes_for_its_member_only(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path, admin_pool: asyncpg.Pool
) -> None:
    hook_text = "default=uuid7"  # a line of the recorded session's edit
    async with serving(stack, fake, tmp_path) as cap:
        session_id, _ = await cap.replay_recorded_session()
        session = capture_workflow_id(stack.principal.tenant_name, stack.principal.key_id,
                                      session_id)
        history = await stack.client.get_workflow_handle(session).fetch_history()
        body = json_format.MessageToDict(Payloads(payloads=sent_payloads(history)))
        _, colleague = await new_member(admin_pool, stack.principal, "carol")
        second = await create_key(admin_pool, stack.principal.tenant_name, name="laptop",
                                  member=stack.principal.member_name)
        decoded = {}
        async with httpx.AsyncClient(base_url=cap.config.server) as http:
            for who, key in (("author", stack.api_key), ("author's other key", second.secret),
                             ("colleague", colleague)):
                answer = await http.post("/codec/decode", json=body,
                                         headers={"Authorization": f"Bearer {key}"})
                assert answer.status_code == 200
                decoded[who] = readable_payloads(answer.text)
    assert hook_text in decoded["author"] and hook_text in decoded["author's other key"]
    assert hook_text not in decoded["colleague"]  # left sealed



async def test_a_sessions_hook_text_decodes_for_its_member_before_any_distillation(
    stack: Stack, fake: FakeAnthropic, tmp_path: Path, admin_pool: asyncpg.Pool
) -> None:
    """The session's row is written with its first event, not by its first distillation:
    the member reads the workflow in the Web UI from the start, and nobody else does."""
    async with serving(stack, fake, tmp_path) as cap:
        await cap.hook(SESSION[0])
        await cap.hook(SESSION[1])  # the prompt: the turn is not over, nothing distilled
        session_id = cap.payload(SESSION[0])["session_id"]
        session = capture_workflow_id(stack.principal.tenant_name, stack.principal.key_id,
                                      session_id)
        history = await stack.client.get_workflow_handle(session).fetch_history()
        body = json_format.MessageToDict(Payloads(payloads=sent_payloads(history)))
        _, colleague = await new_member(admin_pool, stack.principal, "carol")
        decoded = {}
        async with httpx.AsyncClient(base_url=cap.config.server) as http:
            for who, key in (("author", stack.api_key), ("colleague", colleague)):
                answer = await http.post("/codec/decode", json=body,
                                         headers={"Authorization": f"Bearer {key}"})
                assert answer.status_code == 200
                decoded[who] = readable_payloads(answer.text)
        row = await cap.session_row(session_id)
    assert row is not None and row["events_distilled"] == 0
    assert fake.conversations == []  # no model call: the row came with the events
    assert "leak the order count" in decoded["author"]
    assert "leak the order count" not in decoded["colleague"]

def sent_payloads(history: WorkflowHistory) -> list[Payload]:
    """The payloads a workflow was started and signalled with."""
    payloads: list[Payload] = []
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            payloads += event.workflow_execution_started_event_attributes.input.payloads
        if event.HasField("workflow_execution_signaled_event_attributes"):
            payloads += event.workflow_execution_signaled_event_attributes.input.payloads
    return payloads


def readable_payloads(answer: str) -> str:
    """The payloads' data as text (the codec answers base64)."""
    return " ".join(base64.b64decode(p["data"]).decode("utf-8", "replace")
                    for p in json.loads(answer)["payloads"])


async def test_keys_bound_to_a_project_cannot_decode(
    running: Stack, http_server: HttpServer, admin_pool: asyncpg.Pool
) -> None:
    _, body = await saved_history(running)
    bound = await create_key(admin_pool, running.principal.tenant_name, project="api")
    async with httpx.AsyncClient(base_url=http_server.base) as http:
        refused = await http.post("/codec/decode", json=body,
                                  headers={"Authorization": f"Bearer {bound.secret}"})
    assert refused.status_code == 403 and MARKER not in refused.text


async def test_the_web_ui_protocol_cors_cookie_and_host_checks(
    running: Stack, http_server: HttpServer
) -> None:
    _, body = await saved_history(running)
    ui = f"http://127.0.0.1:{running.settings.temporal_ui_port}"
    async with httpx.AsyncClient(base_url=http_server.base) as http:
        anonymous = await http.post("/codec/decode", json=body, headers={"Origin": ui})
        preflight = await http.options("/codec/decode", headers={
            "Origin": ui, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"})
        foreign = await http.options("/codec/decode", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        rebound = await http.post("/codec/decode", json=body, headers={
            "Host": "evil.example:8765", "Authorization": f"Bearer {running.api_key}"})
        encode = await http.post("/codec/encode", json=body,
                                 headers={"Authorization": f"Bearer {running.api_key}"})
        garbage = await http.post("/codec/decode", content=b'{"payloads": 3}', headers={
            "Authorization": f"Bearer {running.api_key}", "Content-Type": "application/json"})
        huge = await http.post("/codec/decode", content=b" " * 4_000_001, headers={
            "Authorization": f"Bearer {running.api_key}", "Content-Type": "application/json"})
        form = await http.get("/codec/login")
        wrong = await http.post("/codec/login", data={"key": "tm_wrong"})
        login = await http.post("/codec/login", data={"key": running.api_key})
        cookie = login.headers["set-cookie"]
        decoded = await http.post("/codec/decode", json=body, headers={"Origin": ui})
    assert anonymous.status_code == 401 and MARKER not in anonymous.text
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ui
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "x-namespace" in preflight.headers["access-control-allow-headers"]
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    assert rebound.status_code == 421 and MARKER not in rebound.text
    assert encode.status_code in (404, 405)
    assert garbage.status_code == 400 and huge.status_code == 413
    assert form.status_code == 200 and 'name="key"' in form.text
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert login.status_code == 200
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "Path=/codec" in cookie
    assert "samesite=strict" in cookie.lower()
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-origin"] == ui
    assert MARKER in json_format.Parse(decoded.content, Payloads()).payloads[0].data.decode()


async def test_the_web_ui_decodes_after_signing_in(running: Stack) -> None:
    """The dev server's Web UI, in Chromium, shows a payload's text once the operator signed in
    at /codec/login and chose to send credentials to the codec endpoint."""
    pytest.importorskip("websocket", reason="websocket-client (dev group) is not installed")
    from tests.browser import chromium_binary

    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; CI installs it)")
    mcp_port, temporal_port, ui_port = (embedded.free_port() for _ in range(3))
    settings = running.settings.model_copy(update={
        "mcp_port": mcp_port, "temporal_ui_port": ui_port,
        "temporal_address": f"127.0.0.1:{temporal_port}",
        # A queue of its own: the relay of `running`'s worker starts workflows on the other
        # Temporal server.
        "task_queue": f"{running.settings.task_queue}-ui"})
    temporal = await asyncio.to_thread(
        embedded.start_temporal, db_file=None, port=temporal_port, ui_port=ui_port,
        ui_codec_endpoint=settings.codec_url)
    try:
        client = await connect(settings, running.pool)
        service = MemoryService(settings=settings, pool=running.pool, temporal=client,
                                embedder=running.embedder)
        saved = await service.save(running.principal, TEXT)
        relay = OutboxRelay(pool=running.pool, client=client, task_queue=settings.task_queue)
        await relay.relay_due()  # started, and no worker: it stays started
        run_id = (await client.get_workflow_handle(saved.workflow_id).describe()).run_id
        page = (f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/"
                f"{quote(saved.workflow_id, safe='')}/{run_id}/history")
        async with serving_service(service):
            shown = await asyncio.to_thread(_sign_in_and_open, binary, settings, running.api_key,
                                            page)
    finally:
        embedded.stop_process(temporal)
    assert shown


def _sign_in_and_open(binary: str, settings: Settings, key: str, page: str) -> bool:
    """Sign in at the codec endpoint, then, in the UI, the codec settings an operator picks
    (this browser's own settings, the same endpoint, cross-origin credentials included)."""
    from tests.browser import Chromium

    with Chromium(binary) as browser:
        browser.open(f"{settings.codec_url}/login")
        browser.evaluate(f"document.querySelector('input[name=key]').value = {json.dumps(key)};"
                         "document.querySelector('form').submit()")
        browser.wait_for("document.body.innerText.includes('Signed in')")
        browser.open(f"http://127.0.0.1:{settings.temporal_ui_port}/")
        browser.evaluate(
            f"localStorage.setItem('endpoint', {json.dumps(json.dumps(settings.codec_url))});"
            "localStorage.setItem('includeCredentials', 'true');"
            "localStorage.setItem('passAccessToken', 'false');"
            "localStorage.setItem('overrideRemoteCodecConfiguration', 'true')")
        browser.open(page)
        return bool(browser.wait_for(f"document.body.innerText.includes({json.dumps(MARKER)})",
                                     timeout=30))
