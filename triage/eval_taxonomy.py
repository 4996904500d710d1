"""A brand's own taxonomy, measured the way a brand would run it: Banking77's 77 intents split 80/20
(stable, by text hash), `socialcare triage train --task issue_type` on the 80 %, then
`socialcare triage eval --task issue_type --model DIR` on the 20 %.

    .venv/bin/python -m triage.eval_taxonomy [--shared ../shared/data]

Prints the eval's JSON object (the test split of Banking77 is kept outside the project).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from triage.train_default import HERE, held_out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    args = p.parse_args()
    rows = list(csv.DictReader((args.shared / "banking77/train.csv").open(encoding="utf-8")))
    cli = [sys.executable, "-m", "service.cli"]
    with tempfile.TemporaryDirectory(prefix="sc-taxonomy-") as tmp:
        parts = {"train": [r for r in rows if not held_out(r["text"], 0.2)],
                 "test": [r for r in rows if held_out(r["text"], 0.2)]}
        for name, part in parts.items():
            with (Path(tmp) / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["text", "label"])
                w.writerows([r["text"], r["label"]] for r in part)
        subprocess.run([*cli, "triage", "train", "--task", "issue_type", "--data", f"{tmp}/train.csv",
                        "--out", f"{tmp}/model"], check=True, stdout=subprocess.DEVNULL)
        done = subprocess.run([*cli, "triage", "eval", "--task", "issue_type", "--model", f"{tmp}/model",
                               "--data", f"{tmp}/test.csv"], check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"train": len(parts["train"]), **{k: result[k] for k in ("n", "accuracy", "macro_f1",
                                                                             "macro_recall")}}))


if __name__ == "__main__":
    main()
