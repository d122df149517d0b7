"""The shape of our ASGI middlewares: each one acts on HTTP requests only and lets the rest
(the lifespan) through. Pure ASGI rather than Starlette's BaseHTTPMiddleware: no task per
request, and the contextvars a middleware sets reach the route's handler."""

from __future__ import annotations

from abc import ABC, abstractmethod

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware(ABC):
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    @abstractmethod
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request (passing it on to ``self.app`` or answering it)."""
