"""A head explains its label with the n-grams that pushed hardest towards it, each on its own column."""

import numpy as np
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
