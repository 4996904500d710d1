"""Escalation on social text: precision and recall of `escalate` (security or fraud) through the whole
engine (heads, keyword rules, cascade) on the held-out half of the hand-labelled real inbound tweets
and the held-out quarter of the written social posts (neither is used in training), and the posts
written for other brands (the held-out halves of `sensitivity_brands.csv`,
`sensitivity_twcs_brands.csv` and `sensitivity_twcs_longtail.csv`, and all of
`sensitivity_unseen_brands.csv` and `sensitivity_boundaries.csv`, which nothing trains on; the latter
also by the boundary each post was written for); and, apart, long posts made of
the held-out real tweets (:func:`long_posts`), which a model reading tweets must read piece by piece;
and how many of a random sample of real tweets, none of which is to escalate, it escalates.

    .venv/bin/python -m triage.eval_escalation [--mode transformer|cascade] [--errors] [--follow-ups]

The labels (tweet ids → sensitivity) are in triage/data/twcs_sensitivity_labels.csv; the tweet texts
are read from ../shared/data at run time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from triage.protocol import ESCALATE_LEVELS as ESCALATE
from triage.train_default import HERE, WRITTEN_EVAL, held_out, sensitivity_validation, twcs_labelled


def long_posts(shared: Path, n: int = 300, seed: int = 7) -> tuple[list[str], list[str]]:
    """Long posts made of held-out real tweets (handles dropped): three to five that do not escalate
    and, in every second post, one that does at a random place: forum- or Reddit-length posts whose
    risk sits in one sentence (triage.pieces). A post's label is its escalating tweet's, else
    ``account`` when one of its tweets is, else ``none``."""
    import random
    import re

    rows = [(re.sub(r"@\w+\s*", "", t).strip(), lab) for tid, t, lab in twcs_labelled(shared) if held_out(tid)]
    risky = [r for r in rows if r[1] in ESCALATE]
    rest = [r for r in rows if r[1] not in ESCALATE]
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        parts = rng.sample(rest, rng.randint(3, 5))
        if i % 2 == 0:
            parts.insert(rng.randint(0, len(parts)), rng.choice(risky))
        texts.append("@SpotifyCares " + " ".join(t if t.endswith((".", "!", "?")) else t + "." for t, _ in parts))
        found = [lab for _, lab in parts]
        labels.append(next((lab for lab in found if lab in ESCALATE), "account" if "account" in found else "none"))
    return texts, labels


def follow_ups(shared: Path, engine, days: float = 1.0) -> dict:  # noqa: ANN001
    """Escalation on the held-out real tweets read alone, and as the service routes them: a customer
    whose earlier tweet (in the replay file, within ``days``) escalated has a case open, and their
    later tweets join it (community.routing.joins_open_case; issue types not modelled)."""
    from datetime import datetime, timedelta

    from triage.protocol import TriageInput
    from triage.train import escalation_metrics
    from triage.train_default import care_tweets

    tweets = care_tweets(shared)
    flagged: dict[str, bool] = {}
    for i in range(0, len(tweets), 256):
        chunk = tweets[i:i + 256]
        for r, o in zip(chunk, engine.score_texts([TriageInput(r["text"]) for r in chunk])):
            flagged[r["tweet_id"]] = o.sensitivity.label in ESCALATE
    when = {r["tweet_id"]: datetime.strptime(r["created_at"], "%a %b %d %H:%M:%S %z %Y") for r in tweets}
    by_author: dict[str, list[str]] = {}
    for r in tweets:
        by_author.setdefault(r["author_id"], []).append(r["tweet_id"])
    author = {r["tweet_id"]: r["author_id"] for r in tweets}

    def in_case(tid: str) -> bool:
        return any(flagged[o] and when[tid] - timedelta(days=days) <= when[o] < when[tid] for o in by_author[author[tid]])

    rows = [(tid, lab) for tid, _, lab in twcs_labelled(shared) if held_out(tid)]
    labels = [lab for _, lab in rows]
    alone = ["security" if flagged[tid] else "none" for tid, _ in rows]
    routed = ["security" if flagged[tid] or in_case(tid) else "none" for tid, _ in rows]
    return {"alone": escalation_metrics(labels, alone), "with_open_cases": escalation_metrics(labels, routed),
            "joined": sum(a != b for a, b in zip(alone, routed)), "case_open_days": days}


# A random sample of the real tweets after the benchmark rows, outside both labelled samples, labelled
# by data/LABELLING.md on December 6 (600: 571 none, 29 account), measurement only: how often the
# engine escalates everyday traffic. Trained on at the real tweets' weight it made them worse
# (0.792 -> 0.764 precision, triage/MEASUREMENTS.md).
RANDOM_SAMPLE = "twcs_sensitivity_random.csv"


def boundaries(name: str) -> list[str] | None:
    """The ``boundary`` column of a measurement-only written file (one per row), when it has one: the
    kind of hard case each post was written for (data/WRITING.md)."""
    import csv

    file = WRITTEN_EVAL.get(name)
    if not file:
        return None
    with (HERE / "data" / file).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["boundary"] for r in rows] if rows and "boundary" in rows[0] else None


def escalation_report(shared: Path, mode: str, errors: bool = False, heads_dir: Path | None = None,
                      with_follow_ups: bool = False) -> dict:
    from triage.engine import BUNDLED, TriageEngine
    from triage.protocol import TriageInput
    from triage.train import escalation_metrics, evaluate

    engine = TriageEngine(mode=mode, heads_dir=heads_dir or BUNDLED, cache_size=0)

    def read(texts: list[str]) -> list[str]:
        return [o.sensitivity.label for o in engine.score_texts([TriageInput(t) for t in texts])]

    def support(labels: list[str]) -> int:
        return sum(lab in ESCALATE for lab in labels)

    report: dict = {}
    every_text, every_label, every_pred = [], [], []
    for name, (texts, labels) in sensitivity_validation(shared).items():
        preds = read(texts)
        m = evaluate(labels, preds, ["none", "account", "security", "fraud"])
        report[name] = {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                        "escalate_support": support(labels),
                        **escalation_metrics(labels, preds)}
        if kinds := boundaries(name):
            report[name]["by_boundary"] = {
                kind: escalation_metrics([y for y, k in zip(labels, kinds) if k == kind],
                                         [p for p, k in zip(preds, kinds) if k == kind])
                for kind in dict.fromkeys(kinds)}
        every_text += texts
        every_label += labels
        every_pred += preds
    report["all"] = {"n": len(every_label), **escalation_metrics(every_label, every_pred)}
    texts, labels = long_posts(shared)  # apart from "all": made of the held-out real tweets above
    report["twcs_long_posts"] = {"n": len(labels), "escalate_support": support(labels),
                                 **escalation_metrics(labels, read(texts))}
    random_rows = twcs_labelled(shared, RANDOM_SAMPLE)  # nothing to escalate: every escalation is a false alarm
    report["twcs_random"] = {"n": len(random_rows), "escalate_support": support([lab for *_, lab in random_rows]),
                             "escalated": support(read([t for _, t, _ in random_rows]))}
    if with_follow_ups:
        report["twcs_real_follow_ups"] = follow_ups(shared, engine)
    if errors:
        report["errors"] = [{"text": t, "label": y, "predicted": p} for t, y, p in
                            zip(every_text, every_label, every_pred) if (y in ESCALATE) != (p in ESCALATE)]
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    p.add_argument("--mode", choices=["transformer", "cascade"], default="transformer")
    p.add_argument("--errors", action="store_true", help="also list the misclassified texts (for labelling work)")
    p.add_argument("--follow-ups", action="store_true",
                   help="also the held-out real tweets as routed: later tweets of a customer with an open case join it "
                        "(scores the whole replay file)")
    p.add_argument("--heads", type=Path, default=None, help="heads directory (default: the bundled heads)")
    p.add_argument("--update-metrics", action="store_true",
                   help="measure both modes and write them under 'escalation' in the heads' metrics.json "
                        "(after editing the keyword rules, which `make heads` would otherwise re-measure)")
    args = p.parse_args()
    if args.update_metrics:
        from triage.engine import BUNDLED

        path = (args.heads or BUNDLED) / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics["escalation"] = {mode: escalation_report(args.shared, mode, heads_dir=args.heads)
                                 for mode in ("transformer", "cascade")}
        path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
        print(json.dumps({"escalation": metrics["escalation"]}))
        return
    print(json.dumps(escalation_report(args.shared, args.mode, args.errors, args.heads, args.follow_ups),
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
