"""Who is calling, for every HTTP route: one authenticator, one rate limit, one audit of refusals.

Every protected route (/mcp, /hooks/*, /api/*, /codec/decode) passes the ``AuthGate``
middleware: the bearer API key (or the codec's sign-in cookie) is looked up in PostgreSQL on
every request (a revoked or expired key is refused from the next request on), a missing,
wrong, revoked or expired key gets the same 401 and an audit row (the key's public prefix
only), and the key's per-minute rate limit answers 429 with Retry-After; a database that does
not answer raises DependencyUnavailable, which the outermost middleware (outages.py) answers
503 with Retry-After, as for every route. The principal it found (with
the project the client works in) is handed to the route; the MCP SDK's TokenVerifier reads it
from here instead of looking the key up a second time.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import asyncpg
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.errors import translates_outages
from mcp_server.middleware import HttpMiddleware
from mcp_server.ratelimit import RateLimiter, retry_after_s, retry_message
from mcp_server.workspace import with_workspace
from team_memory_core.models.principal import Principal
from team_memory_core.tenants import authenticate, record_auth_failure

PROTECTED = ("/mcp", "/hooks/", "/api/", "/codec/decode")
CODEC_COOKIE = "tm_codec"

_authenticated: ContextVar[tuple[str, Principal] | None] = ContextVar("authenticated",
                                                                      default=None)


@dataclass
class Authenticator:
    pool: asyncpg.Pool
    limiter: RateLimiter

    @translates_outages()
    async def principal(self, secret: str, transport: str) -> Principal | None:
        """The key's principal, or None (audited) for a missing, wrong, revoked or expired
        key. Raises DependencyUnavailable when PostgreSQL cannot answer."""
        principal = await authenticate(self.pool, secret) if secret else None
        if principal is None:
            await record_auth_failure(self.pool, secret, transport)
        return principal

    def wait(self, principal: Principal) -> float:
        """Count one request against the key's rate limit: 0 if admitted, else the seconds
        until the next request would be."""
        return self.limiter.acquire(principal.key_id)


def request_principal(request: Request) -> Principal:
    """The principal the gate admitted for this request (protected routes only)."""
    principal = request.scope.get("state", {}).get("principal")
    assert isinstance(principal, Principal), "route not behind the AuthGate"
    return principal


def _secret(scope: Scope) -> str:
    headers = Headers(scope=scope)
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if scope["path"].startswith("/codec/"):  # the Web UI cannot send a header
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == CODEC_COOKIE:
                return value
    return ""


def _refusal(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class AuthGate(HttpMiddleware):
    """The ASGI middleware in front of every route (see the module docstring)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        super().__init__(app)
        self.authenticator = authenticator

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS" or not scope["path"].startswith(PROTECTED):
            await self.app(scope, receive, send)
            return
        secret = _secret(scope)
        principal = await self.authenticator.principal(secret, _transport(scope["path"]))
        if principal is None:
            await _refusal(401, "send a valid API key as a bearer token",
                           **{"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        wait = self.authenticator.wait(principal)
        if wait:
            await _refusal(429, retry_message(wait),
                           **{"Retry-After": str(retry_after_s(wait))})(scope, receive, send)
            return
        principal = with_workspace(principal)
        scope.setdefault("state", {})["principal"] = principal
        token = _authenticated.set((secret, principal))
        try:
            await self.app(scope, receive, send)
        finally:
            _authenticated.reset(token)


def _transport(path: str) -> str:
    """How the audit trail names the route family: "http" (the MCP transport, as before the
    other routes existed), "hooks", "api" or "codec"."""
    family = path.strip("/").split("/", 1)[0]
    return "http" if family == "mcp" else family


class ApiKeyVerifier:
    """The MCP SDK's TokenVerifier for /mcp: the principal the AuthGate admitted for this very
    request and key (it already looked the key up, audited and rate-limited it)."""

    async def verify_token(self, token: str) -> AccessToken | None:
        admitted = _authenticated.get()
        if admitted is None or admitted[0] != token:
            return None
        principal = admitted[1]
        scopes = ["memory:read"] if principal.read_only else ["memory:read", "memory:write"]
        return AccessToken(token=token, client_id=str(principal.key_id), scopes=scopes,
                           claims={"principal": principal.model_dump(mode="json")})


def auth_settings(public_url: str) -> AuthSettings:
    return AuthSettings(
        issuer_url=AnyHttpUrl(public_url),
        resource_server_url=AnyHttpUrl(public_url),
        required_scopes=["memory:read"],
        # Keys are opaque secrets for this server only; there is no audience to check.
        validate_token_resource=False,
    )
