"""Why a head chose its label: the n-grams of the text that pushed hardest towards it.

Every score of every text carries such an explanation, so this runs for each of the five heads on
every mention: it works on a whole batch at once (one weight gather and one sort per head), where a
loop per text had been a third of the triage stage's Python time.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from triage.text import _CACHED_CHARS, BASE_DIM, _term_column, analyze, normalize_for_model, term_columns

_PLACEHOLDERS = {"user", "http", "card_number", "email", "phone", "iban", "national_id", "password", "one_time_code"}


def strongest_terms(weights: np.ndarray, lexical_dim: int, texts: list[str], label_indices: list[int],
                    k: int = 3) -> list[list[str]]:
    """For each text, up to ``k`` of its terms whose weights favour its label over every other label
    most (positive margins only), strongest first. ``weights``: a head's (features, labels) matrix
    whose last ``lexical_dim`` rows are the hashed n-gram columns."""
    out: list[list[str]] = [[] for _ in texts]
    if not lexical_dim or not texts:
        return out
    per_text = [_informative(normalize_for_model(t)) for t in texts]
    lengths = np.fromiter((len(terms) for terms, _, _ in per_text), dtype=np.int64, count=len(texts))
    total = int(lengths.sum())
    if not total:
        return out
    rows = np.repeat(np.arange(len(texts)), lengths)
    terms = [term for t, _, _ in per_text for term in t]
    if BASE_DIM % lexical_dim:  # a width the shared hashing cannot fold into (a custom head's choice)
        at_width = term_columns(terms, lexical_dim)
        columns = np.array([at_width[t] for t in terms], dtype=np.int64)
    else:
        columns = np.concatenate([cols for _, cols, _ in per_text]) % lexical_dim
    columns += weights.shape[0] - lexical_dim
    w = weights[columns]
    at = np.arange(total)
    label = np.asarray(label_indices, dtype=np.int64)[rows]
    own = w[at, label]
    if w.shape[1] > 1:
        w[at, label] = -np.inf
        margin = own - w.max(axis=1)
    else:
        margin = own
    words = np.concatenate([n for _, _, n in per_text])
    order = np.lexsort((-words, -margin, rows))  # by text, strongest first; of equals, the bigram
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rank = np.arange(total) - starts[rows[order]]
    chosen = order[(rank < k) & (margin[order] > 0)]
    for j in chosen.tolist():
        out[rows[j]].append(terms[j])
    return out


def _informative(text: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    return _informative_cached(text) if len(text) <= _CACHED_CHARS else _informative_terms(text)


def _informative_terms(text: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The text's distinct n-grams a person would find telling (no stop words, placeholders or bare
    numbers), their columns at the widest hashing width and their lengths in words."""
    terms = tuple(t for t in dict.fromkeys(analyze(text)) if not _uninformative(t))
    return (terms, np.fromiter((_term_column(t) for t in terms), dtype=np.int64, count=len(terms)),
            np.fromiter((t.count(" ") + 1 for t in terms), dtype=np.int64, count=len(terms)))


_informative_cached = lru_cache(maxsize=16_384)(_informative_terms)


@lru_cache(maxsize=200_000)
def _uninformative(term: str) -> bool:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return all(w in ENGLISH_STOP_WORDS or w.isdigit() or w in _PLACEHOLDERS for w in term.split())
