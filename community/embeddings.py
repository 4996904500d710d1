"""Sentence embeddings for answer retrieval: the MiniLM encoder triage already loads, shared.

One process holds one encoder (``triage.encoder.shared_encoder``); this module adds a bounded
cache keyed by the text, so knowledge articles, templates and community answers are encoded once
and a repeated question costs nothing. Encoding is CPU work: call :func:`encode_async` from the
event loop (it runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict

import numpy as np

CACHE_SIZE = 20_000
_cache: OrderedDict[str, np.ndarray] = OrderedDict()
_lock = threading.Lock()


def _encoder():  # noqa: ANN202 - the triage encoder (loaded once per process, offline)
    from triage.encoder import shared_encoder

    return shared_encoder()


def encode(texts: list[str]) -> np.ndarray:
    """L2-normalized embeddings, shape (len(texts), dim); cached texts are not encoded again."""
    with _lock:
        missing = list(dict.fromkeys(t for t in texts if t not in _cache))
    if missing:
        vectors = _encoder().encode(missing)
        with _lock:
            for text, vec in zip(missing, vectors):
                _cache[text] = vec
                _cache.move_to_end(text)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    with _lock:
        rows = [_cache.get(t) for t in texts]
    if any(r is None for r in rows):  # evicted meanwhile by a larger call: encode those again
        return _encoder().encode(texts)
    return np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)


async def encode_async(texts: list[str]) -> np.ndarray:
    return await asyncio.to_thread(encode, texts)


def cache_size() -> int:
    return len(_cache)
