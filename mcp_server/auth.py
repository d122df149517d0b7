"""Bearer API keys for the HTTP transport (the SDK's TokenVerifier)."""

from __future__ import annotations

import asyncpg
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from team_memory_core.tenants import authenticate, record_auth_failure


class ApiKeyVerifier:
    """Looks the key's hash up in PostgreSQL; wrong, unknown and revoked keys are all None.

    Every request is verified against the database (no cache), so a revoked key is refused
    from the next request on. Refusals are audited with the key's prefix only.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = await authenticate(self._pool, token)
        if principal is None:
            await record_auth_failure(self._pool, token, "http")
            return None
        scopes = ["memory:read"] if principal.read_only else ["memory:read", "memory:write"]
        return AccessToken(
            token=token,
            client_id=str(principal.key_id),
            scopes=scopes,
            claims={"principal": principal.model_dump(mode="json")},
        )


def auth_settings(public_url: str) -> AuthSettings:
    return AuthSettings(
        issuer_url=AnyHttpUrl(public_url),
        resource_server_url=AnyHttpUrl(public_url),
        required_scopes=["memory:read"],
        # Keys are opaque secrets for this server only; there is no audience to check.
        validate_token_resource=False,
    )
