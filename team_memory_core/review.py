"""The merge-review rule: the model may not rewrite or retire another author's memory.

Memory text is untrusted input for the model that reads it: a prompt-injected save can ask
for any merge. Target ids are checked against the candidates the model was shown, but the
merged text is the model's own. So a merge (UPDATE with merged text) or a SUPERSEDE that
would change a memory of another author is held for review instead of applied; changes
within one author's memories apply as before. The author of a memory is the member whose key
saved it (``memories.author_id``; before members, the key, which became a member of the same
id); a memory with no recorded author counts as another's.

A memory flagged as aimed at AI agents (rules/injection.py) changes no other memory at all
(``quarantine``), and must be reviewed before it is shared (``needs_review_before_sharing``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from uuid import UUID

from team_memory_core.models.decisions import Decision, DecisionKind

# Decisions that change an existing memory (the others only add or fold the new one).
CHANGES_TARGET = (DecisionKind.UPDATE, DecisionKind.SUPERSEDE)
PROPOSAL_KIND = {DecisionKind.UPDATE: "merge", DecisionKind.SUPERSEDE: "supersede"}


def same_reach(members: Iterable[UUID | None]) -> bool:
    """All these memories are shared, or all are one member's personal memories: the only
    memories that may ever be merged or folded together (a personal memory's text must not
    reach a shared one, nor another member's)."""
    return len(set(members)) <= 1


def same_author(authors: Iterable[UUID | None]) -> bool:
    """All these memories (or memory and saving key) have one recorded author."""
    found = set(authors)
    return len(found) == 1 and None not in found


def hold_foreign_change(decision: Decision, target_author: UUID | None,
                        actor: UUID | None) -> Decision:
    """The decision to apply for a save by ``actor``: unchanged, or, when it would change a
    memory of another author, ADD with the proposal kept in ``held``."""
    if decision.kind not in CHANGES_TARGET or same_author([target_author, actor]):
        return decision
    return decision.model_copy(update={"kind": DecisionKind.ADD, "held": decision.kind})


def quarantine(decision: Decision) -> Decision:
    """The decision for a memory flagged as aimed at AI agents: it changes no other memory
    (no merge into one, no superseding one, no proposal to), and is kept as its own."""
    if decision.kind not in CHANGES_TARGET and decision.held is None:
        return decision
    return decision.model_copy(update={"kind": DecisionKind.ADD, "target_id": None,
                                       "merged_content": None, "held": None})


class Flaggable(Protocol):
    @property
    def injection_flags(self) -> list[str]: ...


def needs_review_before_sharing(memory: Flaggable) -> bool:
    """Whether a member must review this memory before it is shared beyond its author
    (promoted to the project or the team, or released from a review queue): True for a
    memory flagged as aimed at AI agents (rules/injection.py, Claude Haiku's verdict)."""
    return bool(memory.injection_flags)
