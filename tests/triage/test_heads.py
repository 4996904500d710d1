"""Heads: explanations name the n-grams that pushed hardest towards a label, each on its own column;
extra feature blocks are computed alike in training and scoring, and old heads keep loading."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.heads import Head
from triage.text import lexical_features, term_columns, text_terms

DIM = 2**12


def test_term_columns_are_the_vectorizers_columns_for_words_and_bigrams():
    text = "the reset email never arrives"
    columns = term_columns(text_terms(text), DIM)
    assert sorted(set(columns.values())) == sorted(lexical_features([text], DIM).indices.tolist())
    assert columns["reset email"] not in (columns["reset"], columns["email"])


def test_a_bigram_that_carries_the_label_is_named():
    col = term_columns(["reset email"], DIM)["reset email"]
    weights = np.zeros((DIM, 2), dtype=np.float32)
    weights[col, 1] = 5.0  # only the bigram points to label 1
    head = Head(task="issue_type", labels=["other", "account_access"], weights=weights, bias=np.zeros(2),
                uses_embedding=False, lexical_dim=DIM, version="t")
    [why] = head.explain_batch(["the reset email never arrives"], [1])
    assert why == ["reset email"]
    [none] = head.explain_batch(["the reset email never arrives"], [0])
    assert none == []  # nothing pushes towards "other"


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=200), min_size=1, max_size=5),
       dim=st.sampled_from([2**10, 2**14, 2**16, 3000]))
def test_shared_hashing_is_exactly_what_a_vectorizer_of_that_width_gives(texts, dim):
    """Heads of different widths share one hashing pass per batch (folded counts); the features
    must stay identical to hashing at the head's own width, or trained heads would drift."""
    from sklearn.feature_extraction.text import HashingVectorizer

    from triage.text import TOKEN_PATTERN

    direct = HashingVectorizer(n_features=dim, ngram_range=(1, 2), token_pattern=TOKEN_PATTERN, lowercase=True,
                               alternate_sign=False, norm="l2", dtype=np.float32).transform(texts)
    shared = lexical_features(texts, dim)
    assert shared.shape == direct.shape
    assert abs(shared - direct).max() < 1e-6 if direct.nnz or shared.nnz else True
    again = lexical_features(list(texts), dim)  # the cached batch gives the same matrix
    assert (again != shared).nnz == 0


# --- extra feature blocks (the toxicity head reads the profanity model's probabilities) -----------

OFFENSIVE = ["@user you are a fucking idiot, shut your mouth", "what a piece of shit, go to hell @user"]
BENIGN = ["thanks for fixing my order so quickly, great service", "how do I change the email on my account?"]


def _fit_with_profanity(embeddings):  # noqa: ANN001, ANN202
    from triage.train import fit_head

    texts = OFFENSIVE + BENIGN
    return fit_head("toxicity", texts * 3, (["offensive"] * 2 + ["not_offensive"] * 2) * 3,
                    None if embeddings is None else np.tile(embeddings, (3, 1)), lexical_dim=DIM, c=1.0,
                    extra_features=("profanity",))


def test_the_extra_block_is_the_same_in_training_and_scoring():
    """The matrix a head is fitted on and the block-by-block scoring path put the extra columns in
    the same place (after the embedding, before the n-grams) and compute them on the same text."""
    from triage.profanity import profanity_features
    from triage.text import normalize_for_model

    texts = OFFENSIVE + BENIGN
    emb = np.random.default_rng(0).normal(size=(len(texts), 8)).astype(np.float32)
    head = _fit_with_profanity(emb)
    assert head.extra_features == ["profanity"] and head.weights.shape[0] == 8 + 4 + DIM
    x = head.features(texts, emb).toarray()
    np.testing.assert_allclose(x[:, 8:12], profanity_features([normalize_for_model(t) for t in texts]), rtol=1e-6)
    logits = x @ head.weights + head.bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(head.proba(texts, emb), p / p.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    # a handle or a link is scored as the training text was (normalized before the block)
    np.testing.assert_allclose(head.proba(["@someone you are a fucking idiot"], emb[:1]),
                               head.proba(["@user you are a fucking idiot"], emb[:1]), rtol=1e-6)


def test_a_head_with_an_extra_block_saves_loads_and_explains(tmp_path):
    head = _fit_with_profanity(None)  # a cheap head may read the block too
    head.save(tmp_path / "toxicity.npz")
    again = Head.load(tmp_path / "toxicity.npz")
    assert again.extra_features == ["profanity"]
    np.testing.assert_array_equal(again.proba(OFFENSIVE + BENIGN, None), head.proba(OFFENSIVE + BENIGN, None))
    # explanations read the n-gram rows after the extra columns, not the extra columns themselves
    col = term_columns(["reset email"], DIM)["reset email"]
    again.weights[:] = 0
    again.weights[4 + col, 1] = 5.0
    assert again.explain_batch(["the reset email never arrives"], [1]) == [["reset email"]]


def test_a_head_saved_before_extra_blocks_still_loads_and_scores(tmp_path):
    """Heads saved without the ``extra_features`` key (every head before it, and custom heads from
    `socialcare triage train`) read exactly the embedding and n-gram rows they were trained on."""
    import json

    weights = np.zeros((8 + DIM, 2), dtype=np.float32)
    weights[0, 1] = 3.0
    np.savez_compressed(tmp_path / "old.npz", weights=weights, bias=np.zeros(2, dtype=np.float32),
                        meta=json.dumps({"task": "toxicity", "labels": ["not_offensive", "offensive"],
                                         "uses_embedding": True, "lexical_dim": DIM, "version": "1+old",
                                         "embedding_dim": 8}))
    head = Head.load(tmp_path / "old.npz")
    assert head.extra_features == []
    emb = np.zeros((2, 8), dtype=np.float32)
    emb[0, 0] = 1.0
    p = head.proba(["fucking idiot", "hello"], emb)
    np.testing.assert_allclose(p[:, 1], [1 / (1 + np.exp(-3.0)), 0.5], rtol=1e-5)


def test_a_head_naming_an_unknown_extra_block_is_refused_at_load(tmp_path):
    head = _fit_with_profanity(None)
    head.meta["extra_features"] = ["profanity", "from_the_future"]
    head.save(tmp_path / "toxicity.npz")
    with pytest.raises(ValueError, match="from_the_future"):
        Head.load(tmp_path / "toxicity.npz")


def test_a_decision_threshold_moves_the_argmax_to_the_cut():
    from triage.train import set_threshold

    head = _fit_with_profanity(None)
    before = head.proba(OFFENSIVE + BENIGN, None)[:, 1]
    version = head.version
    set_threshold(head, "offensive", 0.6)
    after = head.proba(OFFENSIVE + BENIGN, None)
    np.testing.assert_array_equal(after.argmax(1) == 1, before >= 0.6)
    assert head.meta["decision_threshold"] == 0.6 and head.version != version


def test_the_bundled_toxicity_head_reads_the_profanity_block_and_labels_clear_cases(transformer_engine):
    from triage.protocol import TriageInput

    assert "profanity" in transformer_engine.full["toxicity"].extra_features
    outs = transformer_engine.score_texts([TriageInput(text=t) for t in OFFENSIVE + BENIGN])
    assert [o.toxicity.label for o in outs] == ["offensive"] * 2 + ["not_offensive"] * 2
