"""A batch's full garbage collections skip the objects made before it; they are put back after, once."""

from __future__ import annotations

import gc
import threading
import weakref

from certfleet.tasks.gc_freeze import earlier_objects_frozen


def test_objects_made_before_are_frozen_while_the_block_runs_and_put_back_after() -> None:
    gc.unfreeze()
    with earlier_objects_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_two_blocks_at_once_put_back_at_the_last_end() -> None:
    gc.unfreeze()
    inner_started, outer_may_end = threading.Event(), threading.Event()
    counts: list[int] = []

    def other_batch() -> None:
        with earlier_objects_frozen():
            inner_started.set()
            outer_may_end.wait(10)
        counts.append(gc.get_freeze_count())

    with earlier_objects_frozen():
        thread = threading.Thread(target=other_batch)
        thread.start()
        assert inner_started.wait(10)
    frozen_while_other_runs = gc.get_freeze_count()
    outer_may_end.set()
    thread.join(10)
    assert frozen_while_other_runs > 0  # the first block ended: the other still runs frozen
    assert counts == [0]  # the last end put everything back


def test_garbage_among_earlier_objects_is_collected_after_the_block() -> None:
    gc.unfreeze()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    with earlier_objects_frozen():
        del a, b
        gc.collect()
        assert gone() is not None  # made before the block: frozen, not collected during it
    gc.collect()
    assert gone() is None  # put back: collected
