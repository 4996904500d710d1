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


TEXTS = [
    "my account was hacked and someone changed my email", "is spotify down right now? nothing loads",
    "love the new update, the playlists are so good", "why was I charged twice this month???",
    "@user the app keeps crashing on my pixel 7 since yesterday", "how do I cancel my premium family plan",
    "can't log in, the reset email never arrives http", "worst customer service ever, fix your app",
    "someone bought a subscription with my card, I never made that payment", "thanks for the quick help!",
    "lol this song is fire 🔥🔥", "where is my order #48213? tracking says delivered but nothing here",
    "FREE GIFT CARDS click here now", "will there be a dark mode for the desktop app?", "ok", "ugh. again.",
]


def test_the_int8_encoder_keeps_the_fp32_geometry(transformer_engine):
    """The default backend is the int8 export; the heads were validated on it, and its features stay
    close to the fp32 model's (the issue asks for cosine >= 0.98 from per-channel quantization)."""
    from triage.encoder import Encoder

    int8 = transformer_engine.encoder
    assert int8.backend == "onnx-int8" and int8.version.endswith("+onnx-int8")
    fp32 = Encoder(backend="torch")
    a, b = int8.features(TEXTS), fp32.features(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 1536)
    for block in range(4):  # the sentence embedding, then the pooled layers the heads read
        cos = (a[:, block * 384:(block + 1) * 384] * b[:, block * 384:(block + 1) * 384]).sum(1)
        assert cos.mean() >= 0.98 and cos.min() >= 0.93, (block, cos.mean(), cos.min())
    assert np.allclose(np.linalg.norm(a[:, :384], axis=1), 1.0, atol=1e-4)


def test_the_int8_export_is_made_once_per_cache_directory(tmp_path, monkeypatch):
    from triage import onnx_export
    from triage.encoder import Encoder

    exports = []
    original = onnx_export._export
    monkeypatch.setattr(onnx_export, "_export", lambda *a: exports.append(a[-1]) or original(*a))
    first = Encoder(backend="onnx-int8", cache_dir=tmp_path)
    assert len(exports) == 1 and not exports[0].exists()  # written aside, then moved in whole
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [exports[0].name]
    second = Encoder(backend="onnx-int8", cache_dir=tmp_path)
    assert len(exports) == 1 and second.model is None  # read from the cache, no torch model, no export
    assert np.allclose(first.features(TEXTS[:3]), second.features(TEXTS[:3]), atol=1e-6)


def test_an_unknown_backend_is_a_clear_error():
    import pytest

    from triage.encoder import Encoder, configure_shared_encoder

    with pytest.raises(ValueError, match="onnx-int8"):
        Encoder(backend="tpu")
    with pytest.raises(ValueError, match="torch"):
        configure_shared_encoder(backend="fp16")


def test_scores_name_the_encoder_backend_that_made_them(transformer_engine):
    from triage.protocol import TriageInput

    [out] = transformer_engine.score_texts([TriageInput(text="the app crashes when I open my library 77f1")])
    assert out.sentiment.model.startswith("all-MiniLM-L6-v2+onnx-int8+")
    assert "+onnx-int8+heads[" in transformer_engine.model_version


def test_passes_of_similar_length_give_each_text_the_features_it_has_alone():
    """The encoder splits a call into passes by length; a text's features must not depend on where
    it landed (fp32: exact up to float rounding; the int8 graph quantizes per pass, see README)."""
    from triage.encoder import Encoder

    fp32 = Encoder(backend="torch")
    fp32.cache_size = 0
    together = fp32.features(TEXTS, batch_size=4)
    alone = np.vstack([fp32.features([t]) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_concurrent_callers_each_get_their_own_texts_features(transformer_engine):
    """The int8 encoder runs passes side by side on a shared pool and callers from several threads
    at once: every caller gets exactly the features of its own texts, as if it had run alone."""
    from concurrent.futures import ThreadPoolExecutor

    enc = transformer_engine.encoder
    calls = [TEXTS[i:] + TEXTS[:i] for i in range(6)]  # the same texts, batched differently per caller
    alone = [enc.features(c, batch_size=4) for c in calls]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda c: enc.features(c, batch_size=4), calls))
    for i, (a, b) in enumerate(zip(alone, together)):
        np.testing.assert_array_equal(a, b)
        # rows belong to their texts: call i is TEXTS rotated by i; back in TEXTS order, each row is
        # nearest its own text's row in call 0 (int8 passes differ a little with their company)
        cos = np.roll(b, i, axis=0)[:, :384] @ together[0][:, :384].T
        assert (cos.argmax(axis=1) == np.arange(len(TEXTS))).all() and cos.diagonal().min() > 0.95
