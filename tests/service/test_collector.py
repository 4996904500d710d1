"""The pipeline tunes the garbage collector once per process: what start-up left is frozen out of
full collections, and young collections come every YOUNG_GC_THRESHOLD allocations."""

from __future__ import annotations

import gc

from service import pipeline


def test_the_collector_is_tuned_once_per_process(monkeypatch):
    threshold = gc.get_threshold()
    freezes = []
    real_freeze = gc.freeze
    monkeypatch.setattr(pipeline.gc, "freeze", lambda: (freezes.append(1), real_freeze()))
    monkeypatch.setattr(pipeline, "_tuned", False)
    try:
        pipeline.tune_collector()
        assert gc.get_freeze_count() > 0 and gc.get_threshold() == (pipeline.YOUNG_GC_THRESHOLD, *threshold[1:])
        # a second pipeline in the process changes nothing (the frozen count itself can only shrink
        # meanwhile, as other threads free frozen objects, so the calls are counted)
        pipeline.tune_collector()
        assert len(freezes) == 1 and gc.get_threshold() == (pipeline.YOUNG_GC_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
