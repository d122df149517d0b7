"""The freshness rule (team_memory_core/rules/freshness.py): one file against the hash it was
saved with, a memory from its files, and the ranking factor."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from team_memory_core.models.anchors import FileState, Freshness
from team_memory_core.models.memories import HistoryEvent
from team_memory_core.rules.freshness import memory_freshness, transitions
from team_memory_core.rules.ranking import freshness_factor
from team_memory_core.store.anchors import AnchorRow

AT = datetime(2026, 11, 30, tzinfo=UTC)
SAVED, OTHER = "a" * 40, "b" * 40


def anchor(blob: str | None, freshness: Freshness = Freshness.FRESH) -> AnchorRow:
    return AnchorRow(uuid4(), "src/a.py", blob, freshness, None, None)


def moved(row: AnchorRow, blob: str | None) -> tuple[Freshness, HistoryEvent | None] | None:
    found = transitions([row], [FileState(path="src/a.py", blob=blob)], AT, "s-1")
    return (found[0].anchor.freshness, found[0].event) if found else None


def test_a_file_is_compared_with_the_hash_it_was_saved_with() -> None:
    assert moved(anchor(SAVED), SAVED) is None  # unchanged: nothing to record
    assert moved(anchor(SAVED), OTHER) == (Freshness.CHANGED, HistoryEvent.ANCHOR_CHANGED)
    assert moved(anchor(SAVED), None) == (Freshness.GONE, HistoryEvent.ANCHOR_GONE)
    assert moved(anchor(SAVED, Freshness.CHANGED), SAVED) == (Freshness.FRESH,
                                                              HistoryEvent.ANCHOR_FRESH)
    assert moved(anchor(SAVED, Freshness.CHANGED), "c" * 40) is None  # still changed
    assert moved(anchor(SAVED, Freshness.GONE), OTHER) == (Freshness.CHANGED,
                                                           HistoryEvent.ANCHOR_CHANGED)


def test_the_first_report_of_a_file_saved_without_a_hash_is_its_baseline() -> None:
    [first] = transitions([anchor(None)], [FileState(path="src/a.py", blob=SAVED)], AT, "s")
    assert (first.anchor.blob, first.anchor.freshness, first.event) == (SAVED, Freshness.FRESH,
                                                                        None)
    assert moved(anchor(None), None) is None  # a file that does not exist yet sets none


def test_a_change_records_when_and_in_which_session() -> None:
    [change] = transitions([anchor(SAVED)], [FileState(path="src/a.py", blob=OTHER)], AT, "s-9")
    assert (change.anchor.changed_at, change.anchor.changed_session) == (AT, "s-9")
    [back] = transitions([change.anchor], [FileState(path="src/a.py", blob=SAVED)], AT, "s-10")
    assert (back.anchor.changed_at, back.anchor.changed_session) == (None, None)


def test_a_memory_is_gone_only_when_every_file_is() -> None:
    fresh, changed, gone = Freshness.FRESH, Freshness.CHANGED, Freshness.GONE
    assert memory_freshness([]) is None
    assert memory_freshness([fresh, fresh]) == fresh
    assert memory_freshness([fresh, changed]) == changed
    assert memory_freshness([fresh, gone]) == changed
    assert memory_freshness([gone, gone]) == gone


def test_search_ranks_a_memory_whose_files_moved_on_lower() -> None:
    assert freshness_factor(None) == freshness_factor("fresh") == 1.0
    assert 1.0 > freshness_factor("changed") > freshness_factor("gone") > 0
