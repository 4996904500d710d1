"""Choose the sensitivity head's regularization by cross-validation, never on held-out data.

The social rows (hand-labelled real tweets and every written post) are held out fold by fold;
Banking77, everyday tweets and issue examples always train, as they do in `make heads`. Escalation
precision, recall, F1 and F2 are counted over all held-out folds together (F2 because recall is the
harder half of the escalation target).

    .venv/bin/python -m triage.cv_sensitivity [--c 1 2 4 8 16] [--folds 5]

Prints one JSON line per C. The figures behind ``train_default.C["sensitivity"]`` (triage/MEASUREMENTS.md).
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np


def cross_validate(texts: list[str], labels: list[str], weights: list[float], embeddings: np.ndarray | None,
                   held: np.ndarray, c: float, *, folds: int = 5, lexical_dim: int = 2**15) -> dict:
    """Escalation figures over the ``held`` rows, each predicted by a head that never saw it."""
    from triage.train import escalation_metrics, fit_head

    fold = np.array([zlib.crc32(t.encode()) % folds for t in texts])  # the same text, the same fold
    w = np.asarray(weights, dtype=float)
    truth: list[str] = []
    predicted: list[str] = []
    for k in range(folds):
        test = np.flatnonzero(held & (fold == k))
        train = np.flatnonzero(~(held & (fold == k)))
        if not len(test):
            continue
        head = fit_head("sensitivity", [texts[i] for i in train], [labels[i] for i in train],
                        embeddings[train] if embeddings is not None else None,
                        lexical_dim=lexical_dim, c=c, sample_weight=w[train])
        p = head.proba([texts[i] for i in test], embeddings[test] if embeddings is not None else None)
        truth += [labels[i] for i in test]
        predicted += [head.labels[j] for j in p.argmax(1)]
    m = escalation_metrics(truth, predicted)
    precision, recall = m["escalate_precision"], m["escalate_recall"]

    def f(beta: float) -> float:
        b2 = beta * beta
        return (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0

    return {"c": c, "folds": folds, "held": int(held.sum()), **m, "f1": round(f(1), 4), "f2": round(f(2), 4)}


def main() -> None:
    from triage.encoder import Encoder
    from triage.train import embed
    from triage.train_default import HERE, LEX, sensitivity_rows

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    p.add_argument("--cache", type=Path, default=HERE.parent / "var" / "cache", help="embedding cache directory")
    p.add_argument("--c", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, 16.0])
    p.add_argument("--folds", type=int, default=5)
    args = p.parse_args()
    rows = sensitivity_rows(args.shared)
    texts, labels, weights = [r.text for r in rows], [r.label for r in rows], [r.weight for r in rows]
    held = np.array([r.social for r in rows])
    embeddings = embed(texts, Encoder(backend="onnx-int8"), cache_dir=args.cache)
    for c in args.c:
        print(json.dumps(cross_validate(texts, labels, weights, embeddings, held, c, folds=args.folds,
                                        lexical_dim=LEX["sensitivity"])), flush=True)


if __name__ == "__main__":
    main()
