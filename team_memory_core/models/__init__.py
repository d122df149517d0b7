"""Pydantic models that cross process boundaries (MCP <-> Temporal <-> activities), one
module per aggregate: memories, principal, decisions, consolidation."""
