"""The pipeline tunes the garbage collector once per process: what start-up left is frozen out of
full collections, and young collections come every YOUNG_GC_THRESHOLD allocations."""

from __future__ import annotations

import gc

from service import pipeline


def test_the_collector_is_tuned_once_per_process(monkeypatch):
    threshold = gc.get_threshold()
    monkeypatch.setattr(pipeline, "_tuned", False)
    try:
        pipeline.tune_collector()
        frozen = gc.get_freeze_count()
        assert frozen > 0 and gc.get_threshold() == (pipeline.YOUNG_GC_THRESHOLD, *threshold[1:])
        pipeline.tune_collector()  # a second pipeline in the process changes nothing
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
