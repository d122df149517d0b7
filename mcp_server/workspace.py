"""The project a client works in, from the ``X-Team-Memory-Project`` request header.

Claude Code sends no working directory to MCP servers; the installed ``headersHelper`` runs in
the session's repository and prints this header with the same project identity the hooks use.
The value only chooses the default project of calls that name none: a key bound to a project
keeps its project, and an explicit ``project`` argument still wins.
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from mcp_server.middleware import HttpMiddleware
from team_memory_core.hook_protocol import PROJECT_HEADER
from team_memory_core.models.memories import PROJECT_PATTERN
from team_memory_core.models.principal import Principal

workspace_project: ContextVar[str | None] = ContextVar("workspace_project", default=None)


def with_workspace(principal: Principal) -> Principal:
    """The principal of the current request, with the project its client works in."""
    project = workspace_project.get()
    if project is None:
        return principal
    return principal.model_copy(update={"workspace_project": project})


class WorkspaceProjectMiddleware(HttpMiddleware):
    """Reads the header once per HTTP request; the MCP SDK carries contextvars set here into
    the tool, resource and prompt handlers of that request."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        value = Headers(scope=scope).get(PROJECT_HEADER)
        if value is not None and not PROJECT_PATTERN.match(value.strip()):
            refusal = JSONResponse(
                {"error": f"{PROJECT_HEADER} must be 1-200 characters of letters, digits and "
                          "._:/@+- (a project name such as github.com/org/repo)"},
                status_code=400)
            await refusal(scope, receive, send)
            return
        token = workspace_project.set(value.strip() if value else None)
        try:
            await self.app(scope, receive, send)
        finally:
            workspace_project.reset(token)
