"""The worker freezes what it loaded at start out of the garbage collector's full collections
(workflows/worker.py, ``freeze_startup_heap``)."""

from __future__ import annotations

import gc
import weakref

from workflows.worker import freeze_startup_heap


class _Node:
    peer: _Node


def test_the_objects_alive_at_start_are_frozen_and_garbage_is_not() -> None:
    cycle = _Node()
    cycle.peer = cycle
    garbage = weakref.ref(cycle)
    del cycle
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert garbage() is None  # the cycle was collected, not frozen
    finally:
        gc.unfreeze()
