"""Bench-only MCP server: the blueprint's inline design and a pure-vector search.

Not product code. ``save_memory_inline`` does what the blueprint's tool call does (embed, look
for similar memories, insert the finished row) before answering; the blueprint also calls
Claude Haiku inline (500 ms+ by its own account), which is left out here, so this baseline is
flattering. ``search_vector`` ranks by cosine distance alone (no full text, no fusion).
Same HTTP stack, auth and database as the real server, so only the design differs.

Run: python -m bench.baseline_server PORT (DATABASE_URL and TEAM_MEMORY_DATA_DIR set).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

import asyncpg
import uvicorn
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from starlette.applications import Starlette

from mcp_server.auth import ApiKeyVerifier, Authenticator, AuthGate, auth_settings
from mcp_server.ratelimit import RateLimiter
from team_memory_core.embedder import QUERY_TUNING, Embedder, create_embedder, embed_async
from team_memory_core.models.memories import (
    Category,
    HistoryEvent,
    IngestInput,
    content_hash,
    memory_id_for,
)
from team_memory_core.models.principal import Principal
from team_memory_core.rules.injection import flags_of
from team_memory_core.rules.redaction import redact
from team_memory_core.settings import Settings
from team_memory_core.store import ingestion, memories
from team_memory_core.store.history import insert_event
from team_memory_core.store.pool import create_app_pool, tenant_tx

VECTOR_SEARCH = """
SELECT m.id, m.content, 1 - (m.embedding <=> $1) AS similarity
FROM memories m
WHERE m.embedding IS NOT NULL AND m.project = $2 AND m.status = 'active'
ORDER BY m.embedding <=> $1
LIMIT $3
"""


def _principal() -> Principal:
    token = get_access_token()
    assert token is not None and token.claims is not None
    return Principal.model_validate(token.claims["principal"])


def baseline_app(settings: Settings, pool: asyncpg.Pool, embedder: Embedder) -> Starlette:
    public = f"http://127.0.0.1:{settings.mcp_port}"
    server = MCPServer(name="bench-baseline", token_verifier=ApiKeyVerifier(),
                       auth=auth_settings(public))

    @server.tool()
    async def save_memory_inline(content: str, category: str = "general") -> dict[str, Any]:
        """Embed, check for similar memories and insert, all before answering."""
        principal = _principal()
        text = redact(content).text
        digest = content_hash(text)
        item = IngestInput(
            memory_id=memory_id_for(principal.tenant_id, settings.project, digest),
            tenant_id=principal.tenant_id, project=settings.project, content=text,
            category=Category(category), importance=1, tags=[], content_hash=digest,
            occurred_at=datetime.now(UTC), key_id=principal.key_id,
        )
        vector = (await embed_async(embedder, [text]))[0]
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await memories.upsert_embedding(conn, item, vector, flags_of(text))
            similar = await ingestion.similar_current(conn, vector, item.memory_id,
                                                     item.project, 5, None)
            await memories.activate(conn, item.memory_id)
            await insert_event(conn, tenant_id=item.tenant_id, memory_id=item.memory_id,
                               event=HistoryEvent.ADDED, reason="inline baseline")
        return {"id": str(item.memory_id), "similar": len(similar)}

    @server.tool()
    async def search_vector(query: str, limit: int = 5) -> dict[str, Any]:
        """Cosine distance only."""
        principal = _principal()
        vector = (await embed_async(embedder, [query]))[0]
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await conn.execute("SET LOCAL hnsw.ef_search = 100")  # as the hybrid query uses
            rows = await conn.fetch(VECTOR_SEARCH, vector, settings.project, limit)
        return {"results": [{"id": str(r["id"]), "similarity": r["similarity"]} for r in rows]}

    app = server.streamable_http_app(host="127.0.0.1")
    # The same authentication as the product's front door (rate limit off, as in the bench).
    app.add_middleware(AuthGate, authenticator=Authenticator(pool, RateLimiter(0)))
    return app


async def serve(port: int) -> None:
    settings = Settings(mcp_port=port)
    embedder = create_embedder(settings, QUERY_TUNING)  # as the product's MCP server
    pool = await create_app_pool(settings)
    try:
        config = uvicorn.Config(baseline_app(settings, pool, embedder), host="127.0.0.1",
                                port=port, log_level="warning", lifespan="on")
        await uvicorn.Server(config).serve()
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
