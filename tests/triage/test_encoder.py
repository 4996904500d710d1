"""The encoder computes each text once per process: what triage encoded, retrieval reuses."""

import numpy as np


def test_a_text_scored_by_triage_is_not_run_again_for_retrieval(transformer_engine):
    encoder = transformer_engine.encoder
    runs = []
    original = encoder._run
    encoder._run = lambda texts, batch_size, layers: runs.append(list(texts)) or original(texts, batch_size,
                                                                                            layers=layers)
    try:
        text = "is the family plan available in canada yet? asking for a friend 1f3a"
        features = encoder.features([text])
        assert runs == [[text]]
        again = encoder.encode([text, text])
        assert runs == [[text]]  # nothing new to compute
        assert np.allclose(again[0], features[0, :384]) and np.allclose(again[1], features[0, :384])
        fresh = encoder.encode(["a different question about downloads 9c2e", text])
        assert runs[-1] == ["a different question about downloads 9c2e"]  # only the unseen text
        assert np.allclose(fresh[1], features[0, :384])
    finally:
        encoder._run = original


def test_the_cache_is_bounded(transformer_engine):
    encoder = transformer_engine.encoder
    size = encoder.cache_size
    try:
        encoder.cache_size = 3
        encoder.encode([f"bounded cache text {i}" for i in range(5)])
        assert len(encoder._sentences) <= 3
    finally:
        encoder.cache_size = size
