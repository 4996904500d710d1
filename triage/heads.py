"""Classification heads: small linear models over features, saved as ``.npz`` files.

A head combines the sentence embedding with hashed word/char n-grams (the lexical view catches
words the encoder blurs, such as "hacked" or "giveaway"), as one multinomial logistic regression.
It may also read named extra feature blocks (``EXTRA_FEATURES``, such as the profanity
model's probabilities), listed in its saved meta so that training and scoring compute the same ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import sparse

from triage.profanity import profanity_features
from triage.text import lexical_features, normalize_for_model

# Extra dense feature blocks a head may read (named in its saved meta, so a block's definition must
# never change under the same name: give a changed one a new name).
EXTRA_FEATURES = {"profanity": profanity_features}


@dataclass
class Head:
    task: str
    labels: list[str]
    weights: np.ndarray  # (n_features, n_labels)
    bias: np.ndarray  # (n_labels,)
    uses_embedding: bool = True
    lexical_dim: int = 0
    version: str = "1"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # row-major: sparse @ dense would otherwise copy the whole (n_features, n_labels) matrix per call
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float32)
        unknown = set(self.extra_features) - set(EXTRA_FEATURES)
        if unknown:  # a head from a newer version: refuse it at load rather than at the first text
            raise ValueError(f"head {self.task} reads unknown extra features {sorted(unknown)}")

    def _blocks(self, texts: list[str], embeddings: np.ndarray | None
                ) -> tuple[np.ndarray | None, sparse.csr_matrix | None]:
        """The two feature blocks in weight-row order: dense columns (the scaled embedding, then
        the extra features in the order the head names them), hashed n-grams."""
        normalized = [normalize_for_model(t) for t in texts]
        dense = []
        if self.uses_embedding:
            if embeddings is None:
                raise ValueError(f"head {self.task} needs embeddings")
            if embeddings.shape[1] < self.embedding_dim:
                raise ValueError(f"head {self.task} needs {self.embedding_dim} embedding columns, got {embeddings.shape[1]}")
            dense.append(embeddings[:, :self.embedding_dim] * self.embedding_scale)
        dense += [EXTRA_FEATURES[name](normalized) for name in self.extra_features]
        lexical = lexical_features(normalized, self.lexical_dim) if self.lexical_dim else None
        return (np.hstack(dense) if len(dense) > 1 else dense[0] if dense else None), lexical

    def features(self, texts: list[str], embeddings: np.ndarray | None) -> sparse.csr_matrix:
        """One sparse matrix of both blocks (what training fits on)."""
        parts = [sparse.csr_matrix(b) for b in self._blocks(texts, embeddings) if b is not None]
        return sparse.hstack(parts, format="csr") if len(parts) > 1 else parts[0]

    @property
    def embedding_dim(self) -> int:
        """Leading encoder-feature columns this head reads (384: the sentence embedding alone)."""
        return int(self.meta.get("embedding_dim", 384))

    @property
    def embedding_scale(self) -> float:
        return float(self.meta.get("embedding_scale", 1.0))

    @property
    def extra_features(self) -> list[str]:
        """Names of the extra feature blocks this head reads (none for heads saved before them)."""
        return list(self.meta.get("extra_features", []))

    def proba(self, texts: list[str], embeddings: np.ndarray | None) -> np.ndarray:
        """Softmax over ``features @ weights + bias``, computed block by block (the dense columns
        and the sparse n-grams) instead of stacking one sparse matrix per call."""
        logits = np.tile(self.bias.astype(np.float32), (len(texts), 1))
        dense, lexical = self._blocks(texts, embeddings)
        offset = 0
        if dense is not None:
            logits += dense @ self.weights[:dense.shape[1]]
            offset = dense.shape[1]
        if lexical is not None:
            logits += np.asarray(lexical @ self.weights[offset:offset + self.lexical_dim])
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def explain_batch(self, texts: list[str], label_indices: list[int], k: int = 3) -> list[list[str]]:
        """For each text, the n-grams that pushed hardest towards its label (one hashing call)."""
        if not self.lexical_dim:
            return [[] for _ in texts]
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        from triage.text import term_columns, text_terms

        per_text = [text_terms(normalize_for_model(t)) for t in texts]
        columns = term_columns(list({term for terms in per_text for term in terms}), self.lexical_dim)
        offset = self.weights.shape[0] - self.lexical_dim
        out = []
        for terms, label in zip(per_text, label_indices):
            terms = [t for t in terms if t in columns and not _uninformative(t, ENGLISH_STOP_WORDS)]
            cols = [columns[t] for t in terms]
            if not cols:
                out.append([])
                continue
            w = self.weights[offset + np.array(cols)]
            others = np.delete(w, label, axis=1) if w.shape[1] > 1 else np.zeros((len(cols), 1))
            margin = w[:, label] - others.max(axis=1)
            order = np.argsort(-margin)
            out.append([terms[i] for i in order[:k] if margin[i] > 0])
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32),
                            meta=json.dumps({"task": self.task, "labels": self.labels,
                                             "uses_embedding": self.uses_embedding, "lexical_dim": self.lexical_dim,
                                             "version": self.version, **self.meta}))

    @classmethod
    def load(cls, path: Path) -> Head:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(task=meta.pop("task"), labels=meta.pop("labels"), weights=data["weights"], bias=data["bias"],
                       uses_embedding=meta.pop("uses_embedding"), lexical_dim=meta.pop("lexical_dim"),
                       version=meta.pop("version"), meta=meta)


@lru_cache(maxsize=200_000)
def _uninformative(term: str, stop: frozenset[str]) -> bool:
    """Stop words, placeholders and bare numbers explain nothing to a person reading the triage.
    (Cached: every head asks about the same common words.)"""
    words = term.split()
    return all(w in stop or w.isdigit() or w in _PLACEHOLDERS for w in words)


_PLACEHOLDERS = {"user", "http", "card_number", "email", "phone", "iban", "national_id", "password", "one_time_code"}

