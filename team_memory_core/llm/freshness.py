"""The review of memories whose files changed since they were saved (docs/freshness.md): for
each, keep it (still true), propose a revised text, or archive it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import Field

from team_memory_core.llm.client import Distiller, LLMUsage, MalformedLLMOutput
from team_memory_core.llm.task import (
    PREAMBLE,
    ForcedTool,
    Frozen,
    Reason,
    bounded,
    json_lines,
    member,
)

SYSTEM = f"""{PREAMBLE}

Each memory below cites files of the repository, and some of those files changed or were \
deleted or moved since the memory was saved. You cannot see the files or the change, only the \
memory, which of its files changed and when, and what the team saved about the same files \
since (newer memories, which may also be wrong). Judge each memory:
- KEEP: it is most likely still true (a change to a file rarely invalidates every statement \
about it; facts about purpose, conventions or reasons usually survive an edit).
- REVISE: a newer memory shows that a specific part of it is no longer true; revised_content is \
the memory corrected by what the newer memories say, keeping everything else exactly. It is \
proposed to a person, not applied.
- ARCHIVE: it is about files that are all gone, or a newer memory replaces it entirely.
When unsure, KEEP: a person sees the files changed either way. Judge every memory, each once, \
using its id exactly, with a one-sentence reason for the audit log."""

_REASON = "One short sentence for the audit log."


class FileChange(Frozen):
    path: str
    state: str  # changed | gone
    since: datetime | None


class ChangedMemory(Frozen):
    """A memory under review, as the model sees it."""

    id: UUID
    category: str
    content: str
    files: list[FileChange]
    newer_on_same_files: list[str] = Field(default_factory=list)


class Verdict(StrEnum):
    KEEP = "KEEP"
    REVISE = "REVISE"
    ARCHIVE = "ARCHIVE"


class Judgment(Frozen):
    id: UUID
    verdict: Verdict
    reason: Reason = Field(default="", description=_REASON)
    revised_content: str | None = Field(default=None,
                                        description="Only for REVISE: the corrected memory.")


class Review(Frozen):
    """One judgment per memory shown."""

    judgments: list[Judgment] = Field(default_factory=list)


TOOL = ForcedTool("record_review", "Record one judgment for each memory under review.", Review)


def prompt(memories: Sequence[ChangedMemory]) -> str:
    return (f"<changed_memories>\n{json_lines(memories)}\n</changed_memories>\n\n"
            "Judge each memory: KEEP, REVISE or ARCHIVE.")


def checked(review: Review, memories: Sequence[ChangedMemory], max_chars: int) -> Review:
    """The review, if it judges only memories shown, each at most once, and every REVISE
    carries a text (a memory left unjudged is reviewed again on the next run)."""
    known = {m.id for m in memories}
    seen: set[UUID] = set()
    for judgment in review.judgments:
        member(judgment.id, known, "id")
        if judgment.id in seen:
            raise MalformedLLMOutput(f"memory {judgment.id} is judged twice")
        seen.add(judgment.id)
        if judgment.verdict == Verdict.REVISE:
            bounded(judgment.revised_content, max_chars, "revised_content")
    return review


async def review_changed(
    client: Distiller, memories: Sequence[ChangedMemory]
) -> tuple[Review, LLMUsage]:
    """A judgment for each memory whose files changed: keep, revise (proposed) or archive."""
    if not memories:
        return Review(), client.no_usage()
    return await TOOL.ask(client, SYSTEM, prompt(memories),
                          lambda review: checked(review, memories, client.max_content_chars),
                          max_tokens=4096)
