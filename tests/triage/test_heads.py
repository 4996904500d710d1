"""A head explains its label with the n-grams that pushed hardest towards it, each on its own column."""

import numpy as np

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
