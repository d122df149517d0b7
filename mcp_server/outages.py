"""The HTTP answer to a dependency outage, for every route at once: 503 with Retry-After and
the dependency named, never a 500 (errors.unavailable tells an outage from a bug)."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from mcp_server.errors import DependencyUnavailable, unavailable
from mcp_server.middleware import HttpMiddleware

log = logging.getLogger("team_memory.mcp")


def unavailable_response(outage: DependencyUnavailable) -> JSONResponse:
    return JSONResponse(
        {"error": str(outage), "dependency": outage.dependency.key,
         "retry_after_s": outage.retry_after_s},
        status_code=503, headers={"Retry-After": str(outage.retry_after_s)})


class OutageAnswer(HttpMiddleware):
    """The outermost middleware: an outage raised by a route (or by the AuthGate's key lookup)
    before its answer started is answered 503; a bug still propagates as one."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            outage = unavailable(error)
            if outage is None or started:
                raise
            log.warning("%s %s answered 503: %s (%s)", scope["method"], scope["path"], outage,
                        type(error).__name__)
            await unavailable_response(outage)(scope, receive, send)
