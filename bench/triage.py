"""Triage stage throughput on real inbound tweets, beside the bare encoder in the same run.

    .venv/bin/python bench/triage.py --n 2000

Prints one JSON object: texts/s of the whole stage in cascade and transformer modes (cold cache,
then the same texts again with a warm cache), the bare encoder's texts/s (as shipped, torch fp32)
and that of the backend the stage runs (int8 ONNX by default), the cache hit rate and
the share of texts the cascade sent to the encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import backend_encoder_texts_per_s, bare_encoder_texts_per_s, load_corpus  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--corpus", type=Path, default=None,
                   help="replayed file (default: the Customer Support on Twitter sample in ../shared/data/twcs)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--encoder-backend", choices=["onnx-int8", "torch"], default="onnx-int8")
    args = p.parse_args()
    from triage.encoder import configure_shared_encoder, shared_encoder
    from triage.engine import TriageEngine
    from triage.protocol import TriageInput

    mentions = load_corpus(args.n, args.corpus)
    items = [TriageInput(text=m.text) for m in mentions]
    configure_shared_encoder(backend=args.encoder_backend)
    encoder = shared_encoder()
    encoder.encode(["warm up"])
    result: dict = {"n": len(items), "encoder_backend": encoder.backend}
    for mode in ("transformer", "cascade"):
        engine = TriageEngine(mode=mode, encoder=encoder, cache_size=100_000, encoder_backend=encoder.backend)
        engine.warm_up()  # a new machine derives the static table here (about a minute), not on the clock
        started = time.perf_counter()
        for i in range(0, len(items), args.batch):
            engine.score_texts(items[i:i + args.batch])
        cold = time.perf_counter() - started
        encoded, hits = engine.stats["encoded"], engine.stats["cache_hits"]
        started = time.perf_counter()
        for i in range(0, len(items), args.batch):
            engine.score_texts(items[i:i + args.batch])
        warm = time.perf_counter() - started
        result[f"{mode}_texts_per_s"] = round(len(items) / cold, 1)
        result[f"{mode}_warm_cache_texts_per_s"] = round(len(items) / warm, 1)
        result[f"{mode}_cache_hit_rate_first_pass"] = round(hits / len(items), 4)
        result[f"{mode}_share_encoded"] = round(encoded / len(items), 4)
    engine = TriageEngine(mode="transformer", encoder=encoder, cache_size=0,  # every text through the encoder
                          encoder_backend=encoder.backend)
    started = time.perf_counter()
    for i in range(0, len(items), args.batch):
        engine.score_texts(items[i:i + args.batch])
    result["transformer_no_cache_texts_per_s"] = round(len(items) / (time.perf_counter() - started), 1)
    result["encoder_texts_per_s"] = round(bare_encoder_texts_per_s([i.text for i in items]), 1)
    result["backend_encoder_texts_per_s"] = round(backend_encoder_texts_per_s(
        [i.text for i in items], encoder.backend, fp32=result["encoder_texts_per_s"]), 1)
    result["cache_hit_rate"] = result["cascade_cache_hit_rate_first_pass"]
    result["share_sent_to_encoder"] = result["cascade_share_encoded"]
    result["transformer_ratio_to_encoder"] = round(result["transformer_texts_per_s"] / result["encoder_texts_per_s"], 3)
    result["transformer_no_cache_ratio_to_encoder"] = round(
        result["transformer_no_cache_texts_per_s"] / result["encoder_texts_per_s"], 3)
    result["transformer_no_cache_ratio_to_backend_encoder"] = round(
        result["transformer_no_cache_texts_per_s"] / result["backend_encoder_texts_per_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
