"""The observation distillation: the compact event log of a captured coding session ->
typed observations worth remembering (decisions, bug fixes, preferences...)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from team_memory_core.hook_protocol import ANCHOR_FILES_MAX
from team_memory_core.llm.client import Distiller, LLMUsage
from team_memory_core.llm.task import PREAMBLE, ForcedTool, Frozen, json_lines

OBSERVATION_MAX_CHARS = 500
MAX_OBSERVATIONS = 12

SYSTEM = f"""{PREAMBLE}

You read the compact event log of one coding session (tool calls with the files they touched \
and a short result, the user's prompts, the assistant's closing messages) and extract the few \
observations worth remembering beyond this session, as team memories.
- decision: a technical choice and its reason ("Use UUID v7 primary keys: sortable by time").
- bugfix: a bug, its cause and its fix.
- preference or convention: how the team wants things done.
- business_rule: a rule of the domain the code must respect.
- architecture: how the system is built; fact: a durable fact about the systems.
Each observation is one self-contained statement of at most {OBSERVATION_MAX_CHARS} \
characters that makes sense without the log: name the component, file, tool or value it is \
about, and say why when the log says why. Importance from 1 (trivia) to 5 (critical, team-wide).
files: the files of the log the observation is about, copied exactly as the log names them \
(at most {ANCHOR_FILES_MAX}; empty when it is about no particular file). The team is told when \
those files change later, so list only files whose content the observation describes.
Leave out routine work (reading files, running tests, listing directories), anything you \
would have to guess, and anything only true for this session. Copy identifiers and values \
exactly. At most {MAX_OBSERVATIONS} observations; an empty list is a good and common answer."""


class ObservationType(StrEnum):
    DECISION = "decision"
    BUGFIX = "bugfix"
    PREFERENCE = "preference"
    CONVENTION = "convention"
    BUSINESS_RULE = "business_rule"
    ARCHITECTURE = "architecture"
    FACT = "fact"


class SessionEventLine(Frozen):
    """One compact event of a coding session, as shown to the model."""

    kind: str
    tool: str | None = None
    files: list[str] = Field(default_factory=list)
    summary: str


class Observation(Frozen):
    type: ObservationType
    content: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=OBSERVATION_MAX_CHARS),
    ]
    importance: int = Field(default=2, ge=1, le=5)
    files: list[str] = Field(default_factory=list)


class ObservationSet(Frozen):
    # The limit is asked of the model, not enforced: a longer list is cut, not refused.
    observations: list[Observation] = Field(default_factory=list,
                                            json_schema_extra={"maxItems": MAX_OBSERVATIONS})


TOOL = ForcedTool(
    "record_observations",
    "Record the observations worth remembering; an empty list when there are none.",
    ObservationSet,
)


def prompt(project: str, events: Sequence[SessionEventLine]) -> str:
    return (
        f"<project>{json.dumps(project)}</project>\n\n"
        f"<session_events>\n{json_lines(events)}\n</session_events>\n\n"
        "Record the observations worth remembering from these events."
    )


def checked(found: ObservationSet, events: Sequence[SessionEventLine]) -> ObservationSet:
    """At most MAX_OBSERVATIONS; each citing only repository files the log shows (a file
    the model made up, or one outside the repository, is dropped: not the observation)."""
    shown = {f for event in events for f in event.files if not f.startswith("/")}
    return ObservationSet(observations=[
        o.model_copy(update={"files": [f for f in dict.fromkeys(o.files)
                                       if f in shown][:ANCHOR_FILES_MAX]})
        for o in found.observations[:MAX_OBSERVATIONS]])


async def distill_events(
    client: Distiller, project: str, events: Sequence[SessionEventLine]
) -> tuple[ObservationSet, LLMUsage]:
    """Typed observations (decisions, bug fixes, preferences...) from a session's events."""
    if not events:
        return ObservationSet(), client.no_usage()
    return await TOOL.ask(client, SYSTEM, prompt(project, events),
                          lambda found: checked(found, events), max_tokens=2048)
