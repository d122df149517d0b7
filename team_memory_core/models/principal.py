"""Who is calling: the key, its tenant, its bounds and the workspace it works in."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from team_memory_core.models.memories import TENANT_WIDE_PROJECT


class Principal(BaseModel):
    """Who is calling: resolved from an API key (or the stdio configuration).

    ``project`` binds the key to one project (a permission). ``workspace_project`` is where
    the caller works right now (the repository identity a Claude Code session sends, or the
    stdio server's working directory): only a default for calls that name no project.
    """

    tenant_id: UUID
    tenant_name: str
    key_id: UUID | None = None
    project: str | None = None
    read_only: bool = False
    workspace_project: str | None = None
    # Who the audit trail names: "mcp" for a key's requests, "operator:<user>" for the CLI.
    actor: str = "mcp"
    # The member the key belongs to. None only for operators and the worker, who see every
    # memory of the tenant (personal ones included); a member sees its own personal memories
    # and the shared ones (Row-Level Security, sql/017).
    member_id: UUID | None = None
    member_name: str | None = None

    @property
    def projects(self) -> list[str] | None:
        """The projects a bound key may reach (its own and tenant-wide), None if unbound."""
        return None if self.project is None else sorted({self.project, TENANT_WIDE_PROJECT})
