"""Sentence embeddings for answer retrieval: the MiniLM encoder triage already loads, shared.

One process holds one encoder (``triage.encoder.shared_encoder``) and its cache of sentence
embeddings: knowledge articles, templates and community answers are encoded once, and a question
triage has just scored is not encoded again. Texts are normalized exactly as triage normalizes
them (handles and links masked), so both stages ask for the same key. Encoding is CPU work: call it
from a worker thread, not the event loop.
"""

from __future__ import annotations

import numpy as np

from triage.text import normalize_for_model


def _encoder():  # noqa: ANN202 - the triage encoder (loaded once per process, offline)
    from triage.encoder import shared_encoder

    return shared_encoder()


def encode(texts: list[str]) -> np.ndarray:
    """L2-normalized embeddings, shape (len(texts), 384); texts seen before are not encoded again."""
    return _encoder().encode([normalize_for_model(t) for t in texts])
