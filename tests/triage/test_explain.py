"""Explanations name, per text, the n-grams that favour its label most: batched, yet what a
per-text reading gives."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.explain import strongest_terms
from triage.text import normalize_for_model, term_columns, text_terms

WORDS = ["charged", "twice", "refund", "hacked", "my", "account", "the", "app", "crashes", "love", "it", "42", "!"]


def reference(weights, dim, text, label, k=3):  # noqa: ANN001
    """One text at a time, as the definition reads."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    placeholders = {"user", "http", "card_number", "email", "phone", "iban", "national_id", "password",
                    "one_time_code"}
    terms = [t for t in text_terms(normalize_for_model(text))
             if not all(w in ENGLISH_STOP_WORDS or w.isdigit() or w in placeholders for w in t.split())]
    if not terms:
        return []
    cols = term_columns(terms, dim)
    w = weights[weights.shape[0] - dim + np.array([cols[t] for t in terms])]
    others = np.delete(w, label, axis=1) if w.shape[1] > 1 else np.zeros((len(terms), 1))
    margin = w[:, label] - others.max(axis=1)
    order = sorted(range(len(terms)), key=lambda i: (-margin[i], -len(terms[i].split()), i))
    return [terms[i] for i in order[:k] if margin[i] > 0]


@settings(max_examples=80, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join), min_size=1, max_size=6),
       dim=st.sampled_from([2**6, 2**10, 3000]), labels=st.integers(1, 4), seed=st.integers(0, 2**16),
       dense=st.sampled_from([0, 8]))
def test_a_batch_gives_what_each_text_gives_alone(texts, dim, labels, seed, dense):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(dense + dim, labels)).astype(np.float32)
    weights[rng.random(weights.shape[0]) < 0.2] = 0.5  # ties, as co-occurring n-grams get
    chosen = [int(rng.integers(labels)) for _ in texts]
    assert strongest_terms(weights, dim, texts, chosen) == [reference(weights, dim, t, c) for t, c in zip(texts, chosen)]


def test_a_head_without_ngrams_explains_nothing():
    assert strongest_terms(np.ones((4, 2), dtype=np.float32), 0, ["charged twice"], [1]) == [[]]
