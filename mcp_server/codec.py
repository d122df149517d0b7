"""The codec endpoint: the Temporal Web UI and CLI decode payloads here, for one tenant at a time.

Temporal's codec server protocol: ``POST /codec/decode`` with ``{"payloads": [...]}`` (the
protobuf JSON of Payloads) answers the same shape, each payload of the caller's tenant
decrypted and every other one (another tenant's, a purged memory's) returned unchanged. No
``/codec/encode``: nothing may write into a workflow through here.

Who may decode: an API key not bound to a project (one bound to a project would otherwise read
other projects' text), sent as ``Authorization: Bearer`` (``temporal workflow show
--codec-endpoint ... --codec-auth "Bearer <key>"``) or, for the Web UI, which cannot send a
header, as a cookie set by the form at ``/codec/login`` (HttpOnly, SameSite=Strict, path
/codec). A personal memory's ingestion and a Claude Code session's hook text decode for their
own member only. Browsers may call it only from the Temporal UI's origins (CORS); Host and
Origin are checked like /mcp's (DNS rebinding). Each request that decoded something is audited.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from google.protobuf import json_format
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from temporalio.api.common.v1 import Payloads

from mcp_server.auth import CODEC_COOKIE, Authenticator, request_principal
from mcp_server.memories import MemoryService
from mcp_server.ratelimit import retry_after_s, retry_message
from team_memory_core.contract import capture_workflow_id
from team_memory_core.models.principal import Principal
from team_memory_core.payload_codec import capture_scopes, decode_for_tenant
from team_memory_core.store.audit import insert_audit
from team_memory_core.store.capture import member_sessions
from team_memory_core.store.pool import principal_tx
from team_memory_core.temporal import keyring_of

COOKIE = CODEC_COOKIE
COOKIE_SECONDS = 8 * 3600
MAX_BODY_BYTES = 4_000_000
ACTOR = "codec"
_ALLOWED_HEADERS = "authorization, content-type, x-namespace"

Endpoint = Callable[[Request], Awaitable[Response]]


class CodecEndpoint:
    def __init__(self, service: MemoryService, authenticator: Authenticator) -> None:
        settings = service.settings
        self._service = service
        self._authenticator = authenticator
        self._origins = set(settings.codec_origins)
        self._security = TransportSecurityMiddleware(TransportSecuritySettings(
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=[*settings.allowed_origins, *settings.codec_origins]))

    def register(self, server: MCPServer) -> None:
        server.custom_route("/codec/decode", methods=["POST", "OPTIONS"])(self.decode)
        server.custom_route("/codec/login", methods=["GET", "POST"])(self.login)
        server.custom_route("/codec/logout", methods=["POST"])(self.logout)

    async def decode(self, request: Request) -> Response:
        refused = await self._security.validate_request(
            request, is_post=request.method == "POST")
        if refused is not None:
            return refused
        cors = self._cors(request)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={
                **cors, "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600"})
        principal = request_principal(request)  # the AuthGate took the key or the cookie
        if principal.project is not None:
            return JSONResponse({"error": "this API key is limited to a project; decoding "
                                 "Temporal payloads needs a key of the whole tenant"},
                                status_code=403, headers=cors)
        declared = request.headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > MAX_BODY_BYTES  # refused unread
        body = b"" if too_large else await request.body()
        if too_large or len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "request body is larger than 4 MB"}, status_code=413,
                                headers=cors)
        try:
            asked = json_format.Parse(body, Payloads())
        except json_format.ParseError:
            return JSONResponse({"error": 'expected {"payloads": [...]}'}, status_code=400,
                                headers=cors)
        return await self._decoded(principal, asked, cors)

    async def _decoded(self, principal: Principal, asked: Payloads,
                       cors: dict[str, str]) -> Response:
        keyring = keyring_of(self._service.temporal)
        own_captures = await self._own_captures(principal, capture_scopes(asked.payloads))
        payloads, opened = await decode_for_tenant(keyring, principal.tenant_id, asked.payloads,
                                                   principal.member_id, own_captures)
        if opened:
            async with principal_tx(self._service.pool, principal) as conn:
                await insert_audit(
                    conn, tenant_id=principal.tenant_id, key_id=principal.key_id, actor=ACTOR,
                    action="temporal.decode", outcome="ok",
                    detail={"payloads": len(payloads), "decoded": opened})
        return JSONResponse(json_format.MessageToDict(Payloads(payloads=payloads)),
                            headers={**cors, "Cache-Control": "no-store"})

    async def _own_captures(self, principal: Principal, asked: set[str]) -> set[str]:
        """Which of the asked Claude Code sessions (capture workflow ids) are the member's."""
        if not asked or principal.member_id is None:
            return set()
        async with principal_tx(self._service.pool, principal) as conn:
            sessions = await member_sessions(conn, principal.member_id)
        return asked & {capture_workflow_id(principal.tenant_name, key_id, session_id)
                        for key_id, session_id in sessions}

    async def login(self, request: Request) -> Response:
        refused = await self._security.validate_request(request)
        if refused is not None:
            return refused
        if request.method == "GET":
            return _page("Sign in to decode Temporal payloads", _FORM)
        form = await request.form()
        key = str(form.get("key", "")).strip()
        principal = await self._authenticator.principal(key, "codec")
        if principal is None:
            return _page("Not a valid API key", _FORM, status=401)
        wait = self._authenticator.wait(principal)  # a sign-in is a request with the key
        if wait:
            refused = _page(html.escape(retry_message(wait)), _FORM, status=429)
            refused.headers["Retry-After"] = str(retry_after_s(wait))
            return refused
        page = _page(f"Signed in: tenant {html.escape(principal.tenant_name)}",
                     "<p>The Temporal Web UI can now decode this tenant's payloads. "
                     "In the UI's codec server settings, enable <em>Include cross-origin "
                     "credentials</em>.</p>")
        page.set_cookie(COOKIE, key, max_age=COOKIE_SECONDS, path="/codec", httponly=True,
                        samesite="strict")
        return page

    async def logout(self, request: Request) -> Response:
        refused = await self._security.validate_request(request)
        if refused is not None:
            return refused
        page = _page("Signed out", "")
        page.delete_cookie(COOKIE, path="/codec", httponly=True, samesite="strict")
        return page

    def _cors(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin not in self._origins:
            return {}
        return {"Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}


_FORM = ('<form method="post"><label>API key (not bound to a project) '
         '<input type="password" name="key" autocomplete="off" required></label> '
         '<button>Sign in</button></form>')


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><title>Team Memory codec</title><h1>{title}</h1>{body}",
        status_code=status,
        headers={"Cache-Control": "no-store", "Content-Security-Policy":
                 "default-src 'none'; form-action 'self'; frame-ancestors 'none'"})


def add_codec_routes(server: MCPServer, service: MemoryService,
                     authenticator: Authenticator) -> None:
    CodecEndpoint(service, authenticator).register(server)
