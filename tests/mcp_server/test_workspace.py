"""The project a client works in (X-Team-Memory-Project) is the default of every call over HTTP,
as Claude Code sends it: no tool argument names the project."""

from __future__ import annotations

import uuid

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from team_memory_core.hook_protocol import PROJECT_HEADER
from team_memory_core.models.memories import MemoryStatus
from team_memory_core.tenants import create_key
from tests.conftest import Stack
from tests.mcp_server.test_http import HttpServer, http_server  # noqa: F401 (fixture)
from tests.mcp_server.test_tools import call

pytestmark = pytest.mark.anyio

PAYMENTS = "github.com/acme/payments"
WEB = "github.com/acme/web"
DECISION = "We use UUID v7 for primary keys in PostgreSQL"


def client_in(server: HttpServer, key: str, project: str | None) -> Client:
    headers = {"Authorization": f"Bearer {key}"}
    if project is not None:
        headers[PROJECT_HEADER] = project
    return Client(streamable_http_client(server.url, http_client=httpx2.AsyncClient(
        headers=headers, timeout=30)))


async def _ids(client: Client, query: str) -> list[str]:
    found = await call(client, "search_memory", query=query)
    return [hit["id"] for hit in found["results"]]


async def test_unnamed_project_is_the_workspace_of_the_request(
    running: Stack, http_server: HttpServer,  # noqa: F811
) -> None:
    async with client_in(http_server, running.api_key, PAYMENTS) as payments:
        saved = await call(payments, "save_memory", content=DECISION, category="architecture")
        assert saved["project"] == PAYMENTS
        assert await running.wait_status(uuid.UUID(saved["id"])) is MemoryStatus.ACTIVE
        assert saved["id"] in await _ids(payments, "which primary key format")
        working_set = await payments.read_resource("memory://working_set")
        assert f"Working set of {PAYMENTS}" in working_set.contents[0].text  # type: ignore[union-attr]
        assert DECISION in working_set.contents[0].text  # type: ignore[union-attr]
        manifesto = await payments.read_resource("memory://manifesto")
        assert PAYMENTS in manifesto.contents[0].text  # type: ignore[union-attr]
    async with client_in(http_server, running.api_key, WEB) as web:
        assert saved["id"] not in await _ids(web, "which primary key format")
        # An explicit project still wins over the workspace.
        assert saved["id"] in [h["id"] for h in (await call(
            web, "search_memory", query="which primary key format", project=PAYMENTS))["results"]]
    async with client_in(http_server, running.api_key, None) as nowhere:
        assert saved["id"] not in await _ids(nowhere, "which primary key format")
    row = await running.service.get(running.principal, uuid.UUID(saved["id"]))
    assert row.project == PAYMENTS


async def test_each_request_of_one_session_carries_its_own_workspace(
    running: Stack, http_server: HttpServer,  # noqa: F811
) -> None:
    current = {PROJECT_HEADER: PAYMENTS}

    async def header(request: httpx2.Request) -> None:
        request.headers.update(current)

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {running.api_key}"},
                              timeout=30, event_hooks={"request": [header]})
    async with Client(streamable_http_client(http_server.url, http_client=http)) as client:
        first = await call(client, "save_memory", content="Payments retries webhooks 5 times")
        current[PROJECT_HEADER] = WEB
        second = await call(client, "save_memory", content="Web uses server-side rendering")
    assert (first["project"], second["project"]) == (PAYMENTS, WEB)


async def test_a_key_bound_to_a_project_keeps_it_whatever_the_workspace(
    running: Stack, http_server: HttpServer, admin_pool: object,  # noqa: F811
) -> None:
    issued = await create_key(admin_pool, running.principal.tenant_name,  # type: ignore[arg-type]
                              project=PAYMENTS)
    async with client_in(http_server, issued.secret, WEB) as bound:
        saved = await call(bound, "save_memory", content="Refunds need two approvals")
    assert saved["project"] == PAYMENTS


async def test_a_malformed_workspace_header_is_refused_clearly(
    running: Stack, http_server: HttpServer,  # noqa: F811
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(http_server.url, json={}, headers={
            "Authorization": f"Bearer {running.api_key}", PROJECT_HEADER: "no spaces allowed",
            "Accept": "application/json, text/event-stream"})
    assert response.status_code == 400
    assert PROJECT_HEADER in response.json()["error"]
