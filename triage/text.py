"""Text preparation shared by training and scoring (the same on both sides, or the heads drift)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np
from scipy import sparse

_HANDLE = re.compile(r"@\w{1,50}")
_URL = re.compile(r"https?://\S+|www\.\S+")
_SPACE = re.compile(r"\s+")
TOKEN_PATTERN = r"(?u)\b\w+\b|[!?]"
_TOKEN = re.compile(TOKEN_PATTERN)


def normalize_for_model(text: str) -> str:
    """Handles become @user and links http, as in TweetEval; case is kept for the encoder. (Every
    head and the static embedder normalize the same texts: short ones are remembered.)"""
    return _normalized(text) if len(text) <= _CACHED_CHARS else _normalize(text)


_CACHED_CHARS = 4096  # longer (rare, possibly hostile) texts are not kept in the caches below


def _normalize(text: str) -> str:
    text = _URL.sub("http", _HANDLE.sub("@user", text))
    return _SPACE.sub(" ", text).strip()[:2000]


_normalized = lru_cache(maxsize=16_384)(_normalize)


@lru_cache(maxsize=8)
def _vectorizer(dim: int, norm: str | None = "l2"):  # noqa: ANN202
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=dim, ngram_range=(1, 2), token_pattern=TOKEN_PATTERN, lowercase=True,
                             alternate_sign=False, norm=norm, dtype=np.float32)


# Heads hash into power-of-two widths; counts hashed once into the widest column space fold into any
# narrower one exactly (|h| mod d == (|h| mod BASE_DIM) mod d when d divides BASE_DIM).
BASE_DIM = 1 << 20
_RECENT: OrderedDict[tuple[str, ...], sparse.csr_matrix] = OrderedDict()
_RECENT_LOCK = threading.Lock()


def _counts(texts: list[str]) -> sparse.csr_matrix:
    """Raw hashed n-gram counts at BASE_DIM, kept for the last few batches: every head of a triage
    reads the same texts, and vectorizing them once per head was a third of the cascade's time."""
    key = tuple(texts)
    with _RECENT_LOCK:
        hit = _RECENT.get(key)
        if hit is not None:
            _RECENT.move_to_end(key)
            return hit
    indptr = np.zeros(len(texts) + 1, dtype=np.int64)
    columns: list[int] = []
    for i, text in enumerate(texts):
        columns.extend(_columns(text))
        indptr[i + 1] = len(columns)
    x = sparse.csr_matrix((np.ones(len(columns), dtype=np.float32), np.array(columns, dtype=np.int32), indptr),
                          shape=(len(texts), BASE_DIM))
    x.sum_duplicates()
    with _RECENT_LOCK:
        _RECENT[key] = x
        while len(_RECENT) > 8:
            _RECENT.popitem(last=False)
    return x


def analyze(text: str) -> tuple[str, ...]:
    """The n-grams the vectorizer counts, repeats included: the lowercased text's tokens, then its
    bigrams (sklearn's ``HashingVectorizer(ngram_range=(1, 2))`` analyzer, without its overhead)."""
    return _analyzed(text) if len(text) <= _CACHED_CHARS else _analyze(text)


def _analyze(text: str) -> tuple[str, ...]:
    words = _TOKEN.findall(text.lower())
    return (*words, *(f"{a} {b}" for a, b in zip(words, words[1:])))


_analyzed = lru_cache(maxsize=16_384)(_analyze)


def _columns(text: str) -> list[int]:
    return [_term_column(term) for term in analyze(text)]


_COLUMNS: dict[str, int] = {}  # term -> column: a plain dict (an LRU's bookkeeping cost more than hashing)
_COLUMNS_MAX = 1 << 19


def _term_column(term: str) -> int:
    """A term's column at BASE_DIM exactly as sklearn's FeatureHasher places it (signed 32-bit
    murmurhash of the UTF-8 bytes, seed 0; its absolute value modulo the width)."""
    column = _COLUMNS.get(term)
    if column is None:
        from sklearn.utils import murmurhash3_32

        h = int(murmurhash3_32(term, seed=0))
        column = (2147483647 - (BASE_DIM - 1)) % BASE_DIM if h == -2147483648 else abs(h) % BASE_DIM
        if len(_COLUMNS) >= _COLUMNS_MAX:  # a long-running service meets new words forever
            _COLUMNS.clear()
        _COLUMNS[term] = column
    return column


def lexical_features(texts: list[str], dim: int) -> sparse.csr_matrix:
    """Hashed word unigrams and bigrams, L2-normalized (a vocabulary-free bag of words); exactly
    what ``HashingVectorizer(n_features=dim, norm="l2")`` gives."""
    if dim > BASE_DIM or BASE_DIM % dim:
        return _vectorizer(dim, "l2").transform(texts)
    counts = _counts(texts)
    folded = sparse.csr_matrix((counts.data.copy(), counts.indices % dim, counts.indptr.copy()),
                               shape=(counts.shape[0], dim))
    folded.sum_duplicates()
    rows = np.repeat(np.arange(folded.shape[0]), np.diff(folded.indptr))  # L2 rows, without sklearn's checks
    norms = np.sqrt(np.bincount(rows, weights=folded.data.astype(np.float64) ** 2, minlength=folded.shape[0]))
    folded.data = (folded.data / norms[rows]).astype(np.float32)
    return folded


def text_terms(text: str) -> list[str]:
    """Unigrams and bigrams as the vectorizer sees them, each once (for explanations)."""
    return list(dict.fromkeys(analyze(text)))


def term_columns(terms: list[str], dim: int) -> dict[str, int]:
    """The hashed column of each term, exactly as the vectorizer places it (``|murmurhash3_32(term,
    seed=0)| mod dim``). Hashing the term itself, not vectorizing it as a document, keeps a bigram on
    its own column (a document "a b" would also yield the columns of "a" and "b")."""
    from sklearn.utils import murmurhash3_32

    return {t: abs(int(murmurhash3_32(t, seed=0))) % dim for t in terms}
