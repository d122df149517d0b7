"""HTTP endpoints for the Claude Code hooks, beside /mcp on the same app and with the same
bearer API keys: POST /hooks/events (capture) and POST /hooks/context (session start)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server import MCPServer
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_server.auth import request_principal
from mcp_server.capture import CaptureService, ContextRequest, HookEvents
from mcp_server.errors import Forbidden
from mcp_server.http_input import BodyTooLarge, read_body
from team_memory_core.hook_protocol import BODY_MAX_BYTES, CONTEXT_ROUTE, EVENTS_ROUTE
from team_memory_core.models.principal import Principal

Handler = Callable[[Request, Principal], Awaitable[Response]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _handled(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The route for ``handler``: the principal the AuthGate admitted, and the caller's
    mistakes as 4xx answers."""
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, request_principal(request))
        except BodyTooLarge as error:
            return _error(413, str(error))
        except (ValidationError, ValueError) as error:
            return _error(400, _describe(error))
        except Forbidden as error:
            return _error(403, str(error))
    return endpoint


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(": ".join(filter(None, (".".join(map(str, e["loc"])), e["msg"])))
                         for e in error.errors()[:5])
    return str(error)


async def _body(request: Request, model: type[BaseModel]) -> BaseModel:
    return model.model_validate_json(await read_body(request, BODY_MAX_BYTES))


def register_hook_routes(server: MCPServer, capture: CaptureService) -> None:
    async def events(request: Request, principal: Principal) -> Response:
        batch = await _body(request, HookEvents)
        assert isinstance(batch, HookEvents)
        accepted = await capture.accept(principal, batch)
        return JSONResponse({"accepted": accepted.accepted, "capture": accepted.capture,
                             "note": accepted.note}, status_code=202)

    async def context(request: Request, principal: Principal) -> Response:
        asked = await _body(request, ContextRequest)
        assert isinstance(asked, ContextRequest)
        found = await capture.session_context(principal, asked)
        return JSONResponse({"context": found.text, "capture": capture.enabled,
                             "check": found.check, "anchors": found.anchors})

    server.custom_route(EVENTS_ROUTE, methods=["POST"])(_handled(events))
    server.custom_route(CONTEXT_ROUTE, methods=["POST"])(_handled(context))
