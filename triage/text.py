"""Text preparation shared by training and scoring (the same on both sides, or the heads drift)."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from scipy import sparse

_HANDLE = re.compile(r"@\w{1,50}")
_URL = re.compile(r"https?://\S+|www\.\S+")
_SPACE = re.compile(r"\s+")
TOKEN_PATTERN = r"(?u)\b\w+\b|[!?]"
_TOKEN = re.compile(TOKEN_PATTERN)


def normalize_for_model(text: str) -> str:
    """Handles become @user and links http, as in TweetEval; case is kept for the encoder."""
    text = _URL.sub("http", _HANDLE.sub("@user", text))
    return _SPACE.sub(" ", text).strip()[:2000]


@lru_cache(maxsize=8)
def _vectorizer(dim: int):  # noqa: ANN202
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=dim, ngram_range=(1, 2), token_pattern=TOKEN_PATTERN, lowercase=True,
                             alternate_sign=False, norm="l2", dtype=np.float32)


def lexical_features(texts: list[str], dim: int) -> sparse.csr_matrix:
    """Hashed word unigrams and bigrams, L2-normalized (a vocabulary-free bag of words)."""
    return _vectorizer(dim).transform(texts)


def text_terms(text: str) -> list[str]:
    """Unigrams and bigrams as the vectorizer sees them (for explanations)."""
    words = [w.lower() for w in _TOKEN.findall(text)]
    return list(dict.fromkeys(words + [f"{a} {b}" for a, b in zip(words, words[1:])]))


def term_columns(terms: list[str], dim: int) -> dict[str, int]:
    """The hashed column of each term, exactly as the vectorizer places it (``|murmurhash3_32(term,
    seed=0)| mod dim``). Hashing the term itself, not vectorizing it as a document, keeps a bigram on
    its own column (a document "a b" would also yield the columns of "a" and "b")."""
    from sklearn.utils import murmurhash3_32

    return {t: abs(int(murmurhash3_32(t, seed=0))) % dim for t in terms}
