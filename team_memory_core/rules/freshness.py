"""Freshness (docs/freshness.md): how a memory's files compare with the files it was saved
against, from the states the hooks report. Pure functions: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from team_memory_core.models.anchors import FileState, Freshness
from team_memory_core.models.memories import HistoryEvent
from team_memory_core.store.anchors import AnchorRow

EVENT_OF = {Freshness.FRESH: HistoryEvent.ANCHOR_FRESH,
            Freshness.CHANGED: HistoryEvent.ANCHOR_CHANGED,
            Freshness.GONE: HistoryEvent.ANCHOR_GONE}
# Search ranks a memory whose files moved on below an equally relevant fresh one (a factor
# on its score: still found, as evidence of what was true).
RANK_FACTOR = {Freshness.CHANGED: 0.85, Freshness.GONE: 0.7}


@dataclass(frozen=True)
class Transition:
    """An anchor that a reported state changed: its row as it becomes, and the history
    event to record (None: only its baseline was set, at the first report of the file)."""

    anchor: AnchorRow
    event: HistoryEvent | None
    reported: str | None  # the file's hash as reported (None: it does not exist)


def compare(baseline: str | None, reported: str | None) -> Freshness:
    if reported is None:
        return Freshness.GONE
    return Freshness.FRESH if reported == baseline else Freshness.CHANGED


def transition(anchor: AnchorRow, state: FileState, at: datetime,
               session_id: str | None) -> Transition | None:
    """What one reported state does to one anchor. An anchor saved without a hash takes the
    first hash reported as its baseline (a file that does not exist yet sets none)."""
    if anchor.blob is None:
        if state.blob is None:
            return None
        return Transition(replace(anchor, blob=state.blob, freshness=Freshness.FRESH,
                                  changed_at=None, changed_session=None), None, state.blob)
    freshness = compare(anchor.blob, state.blob)
    if freshness == anchor.freshness:
        return None
    if freshness == Freshness.FRESH:
        changed = replace(anchor, freshness=freshness, changed_at=None, changed_session=None)
    else:
        changed = replace(anchor, freshness=freshness, changed_at=at, changed_session=session_id)
    return Transition(changed, EVENT_OF[freshness], state.blob)


def transitions(anchors: Sequence[AnchorRow], states: Iterable[FileState], at: datetime,
                session_id: str | None) -> list[Transition]:
    reported = {state.path: state for state in states}
    found = []
    for anchor in anchors:
        state = reported.get(anchor.path)
        moved = None if state is None else transition(anchor, state, at, session_id)
        if moved is not None:
            found.append(moved)
    return found


def memory_freshness(anchors: Iterable[Freshness]) -> Freshness | None:
    """A memory's freshness from its files': gone when every file is gone, changed when one
    changed or went, fresh otherwise; None when it cites no file."""
    states = list(anchors)
    if not states:
        return None
    if all(state == Freshness.GONE for state in states):
        return Freshness.GONE
    if any(state != Freshness.FRESH for state in states):
        return Freshness.CHANGED
    return Freshness.FRESH


def event_reason(anchor: AnchorRow) -> str:
    """The history line of a transition (the path is checked text: no control characters)."""
    session = f" in session {anchor.changed_session}" if anchor.changed_session else ""
    return {Freshness.FRESH: f"{anchor.path} is back to the content it was saved against",
            Freshness.CHANGED: f"{anchor.path} changed since the memory was saved{session}",
            Freshness.GONE: f"{anchor.path} was deleted or moved{session}"}[anchor.freshness]


def unique_states(states: Iterable[FileState]) -> list[FileState]:
    """One state per path, the last reported."""
    return list({state.path: state for state in states}.values())
