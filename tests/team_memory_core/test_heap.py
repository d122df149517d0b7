"""The worker and the MCP server freeze what they loaded at start out of the garbage
collector's full collections (team_memory_core/heap.py)."""

from __future__ import annotations

import gc
import weakref

from team_memory_core.heap import freeze_start_up_objects


class _Node:
    peer: _Node


def test_the_objects_alive_at_start_are_frozen_and_garbage_is_not() -> None:
    cycle = _Node()
    cycle.peer = cycle
    garbage = weakref.ref(cycle)
    del cycle
    try:
        freeze_start_up_objects()
        assert gc.get_freeze_count() > 0
        assert garbage() is None  # the cycle was collected, not frozen
    finally:
        gc.unfreeze()
