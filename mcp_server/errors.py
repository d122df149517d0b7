"""What a use case refuses with: each maps to one client-facing answer (a tool error, an HTTP
status) in the transport that called it. Nothing was written when one is raised."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Bad input from the caller; nothing was written."""


class NotFound(LookupError):
    """No such memory in the caller's scope (one outside it is not found either)."""


class Forbidden(PermissionError):
    """The key may not do this (read-only, bound to another project)."""


class RateLimited(Forbidden):
    """The key is over its per-minute request budget; the message says when to retry."""
