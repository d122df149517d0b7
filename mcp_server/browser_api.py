"""The memory browser: a static page at /browser and the small JSON API it calls under /api/.

The page holds no data; every /api/ call needs the same bearer API key as /mcp and acts as that
key's principal (tenant, project limit, read-only), through MemoryService like the MCP tools.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from importlib.resources import files
from typing import Any
from uuid import UUID

from mcp.server import MCPServer
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from mcp_server.auth import request_principal
from mcp_server.errors import Forbidden, InvalidInput, NotFound
from mcp_server.http_input import BodyTooLarge, parse_json, read_body
from mcp_server.memories import MemoryService
from mcp_server.sharing import SharingService
from team_memory_core.models.principal import Principal
from team_memory_core.rules.injection import describe

Handler = Callable[[Request, Principal], Awaitable[Any]]
BODY_LIMIT = 64_000  # a forget reason is at most 500 characters
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def add_browser_routes(server: MCPServer, service: MemoryService) -> None:
    page = files("mcp_server").joinpath("browser", "index.html").read_text(encoding="utf-8")
    sharing = SharingService(service)

    async def index(_: Request) -> Response:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    def api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(await handler(request, request_principal(request)),
                                    headers={"Cache-Control": "no-store"})
            except BodyTooLarge as error:
                return JSONResponse({"error": str(error)}, status_code=413)
            except (InvalidInput, ValueError) as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            except Forbidden as error:
                return JSONResponse({"error": str(error)}, status_code=403)
            except NotFound as error:
                return JSONResponse({"error": str(error)}, status_code=404)

        return endpoint

    async def whoami(_: Request, principal: Principal) -> dict[str, Any]:
        return {"tenant": principal.tenant_name, "member": principal.member_name,
                "read_only": principal.read_only,
                "project": service.resolve_project(principal, None),
                "project_locked": principal.project is not None,
                "capture": service.settings.anthropic_api_key is not None}

    async def search(request: Request, principal: Principal) -> dict[str, Any]:
        params = request.query_params
        hits = await service.search(
            principal, params.get("q", ""), limit=int(params.get("limit", "20")),
            project=params.get("project") or None, category=params.get("category") or None,
            include_history=params.get("include_history") == "true",
        )
        return {"results": [hit.model_dump(mode="json") for hit in hits]}

    async def memory(request: Request, principal: Principal) -> dict[str, Any]:
        memory_id = UUID(request.path_params["memory_id"])
        found = await service.get(principal, memory_id, include_history=True)
        report = await service.status(principal, memory_id)
        return {"memory": found.model_dump(mode="json"), "status": report.model_dump(mode="json"),
                "flag_reasons": [describe(flag) for flag in found.injection_flags]}

    async def forget(request: Request, principal: Principal) -> dict[str, Any]:
        forgotten = await service.forget(principal, UUID(request.path_params["memory_id"]),
                                         await _reason(request))
        return {"memory": forgotten.model_dump(mode="json")}

    async def review(_: Request, principal: Principal) -> dict[str, Any]:
        return {"waiting": [w.model_dump(mode="json")
                            for w in await sharing.queue(principal)]}

    async def approve(request: Request, principal: Principal) -> dict[str, Any]:
        done = await sharing.approve(principal, UUID(request.path_params["memory_id"]),
                                     _proposal(request))
        return done.model_dump(mode="json")

    async def reject(request: Request, principal: Principal) -> dict[str, Any]:
        done = await sharing.reject(principal, UUID(request.path_params["memory_id"]),
                                    await _reason(request), _proposal(request))
        return done.model_dump(mode="json")

    server.custom_route("/browser", methods=["GET"])(index)
    server.custom_route("/api/review", methods=["GET"])(api(review))
    server.custom_route("/api/review/{memory_id}/approve", methods=["POST"])(api(approve))
    server.custom_route("/api/review/{memory_id}/reject", methods=["POST"])(api(reject))
    server.custom_route("/api/whoami", methods=["GET"])(api(whoami))
    server.custom_route("/api/search", methods=["GET"])(api(search))
    server.custom_route("/api/memories/{memory_id}", methods=["GET"])(api(memory))
    server.custom_route("/api/memories/{memory_id}/forget", methods=["POST"])(api(forget))


def _proposal(request: Request) -> int | None:
    """Which of a memory's held merges or supersedes a decision is about: ?proposal=N."""
    given = request.query_params.get("proposal")
    if given is None:
        return None
    if not given.isdigit() or len(given) > 18:
        raise InvalidInput("proposal must be a proposal number")
    return int(given)


async def _reason(request: Request) -> str:
    """The reason a forget or a rejection carries: {"reason": "..."}."""
    body = parse_json(await read_body(request, BODY_LIMIT))
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str):
        raise InvalidInput("a reason is required")
    return reason
