"""Escalation on social text: precision and recall of `escalate` (security or fraud) through the whole
engine (heads, keyword rules, cascade) on the held-out half of the hand-labelled real inbound tweets
and the held-out quarter of the written social posts (neither is used in training), and the posts
written for other brands (the held-out halves of `sensitivity_brands.csv` and
`sensitivity_twcs_brands.csv`).

    .venv/bin/python -m triage.eval_escalation [--mode transformer|cascade] [--errors]

The labels (tweet ids → sensitivity) are in triage/data/twcs_sensitivity_labels.csv; the tweet texts
are read from ../shared/data at run time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from triage.train_default import HERE, sensitivity_validation


def escalation_report(shared: Path, mode: str, errors: bool = False, heads_dir: Path | None = None) -> dict:
    from triage.engine import BUNDLED, TriageEngine
    from triage.protocol import TriageInput
    from triage.train import escalation_metrics, evaluate

    engine = TriageEngine(mode=mode, heads_dir=heads_dir or BUNDLED, cache_size=0)
    report: dict = {}
    every_text, every_label, every_pred = [], [], []
    for name, (texts, labels) in sensitivity_validation(shared).items():
        preds = [o.sensitivity.label for o in engine.score_texts([TriageInput(t) for t in texts])]
        m = evaluate(labels, preds, ["none", "account", "security", "fraud"])
        report[name] = {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                        "escalate_support": sum(lab in ("security", "fraud") for lab in labels),
                        **escalation_metrics(labels, preds)}
        every_text += texts
        every_label += labels
        every_pred += preds
    report["all"] = {"n": len(every_label), **escalation_metrics(every_label, every_pred)}
    if errors:
        esc = {"security", "fraud"}
        report["errors"] = [{"text": t, "label": y, "predicted": p} for t, y, p in
                            zip(every_text, every_label, every_pred) if (y in esc) != (p in esc)]
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    p.add_argument("--mode", choices=["transformer", "cascade"], default="transformer")
    p.add_argument("--errors", action="store_true", help="also list the misclassified texts (for labelling work)")
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
    print(json.dumps(escalation_report(args.shared, args.mode, args.errors, args.heads), ensure_ascii=False))


if __name__ == "__main__":
    main()
