"""bench/pipeline.py keeps the issue's contract: one JSON object with the agreed keys, nothing lost
or duplicated on a small run, and the service's peak RSS read before the bare encoder is loaded
for the comparison."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"mode", "n", "mentions_per_s", "encoder_texts_per_s", "ratio_to_encoder", "p50_ms", "p95_ms", "p99_ms",
        "peak_rss_mb", "lost", "duplicated"}
ARGS = ["--mode", "embedded", "--triage", "cascade", "--n", "40", "--encoder-sample", "64", "--timeout", "300"]
# The same benchmark with a bare encoder that only takes 400 MB: had the peak been read after it,
# it would include them.
FAT_ENCODER = """
import resource, sys
sys.path.insert(0, {root!r})
import bench.pipeline as pipeline

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def current_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / (1 << 20)

def fat_encoder(texts):
    global ballast, before
    before = peak_mb()
    # enough to pass the service's peak by 400 MB, whatever the service freed since
    ballast = b"\\x01" * (int(before - current_mb() + 400) << 20)  # written, so resident
    return 100.0

pipeline.bare_encoder_texts_per_s = fat_encoder
sys.argv = ["bench/pipeline.py", *{args!r}]
pipeline.main()
print(json.dumps({{"before_encoder_mb": before, "final_mb": peak_mb()}}))
"""


def run(argv: list[str], shared_data) -> list[str]:
    shared_data("twcs/spotifycares_inbound.csv")  # the replayed corpus (skip, or fail in CI, without it)
    env = {**os.environ, "SOCIALCARE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return [line for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.timeout(450)
def test_the_pipeline_benchmark_prints_one_json_object_with_the_contract_keys(shared_data):
    lines = run(["bench/pipeline.py", *ARGS], shared_data)
    assert len(lines) == 1, lines  # one object, nothing else on stdout
    result = json.loads(lines[0], parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert KEYS <= set(result), KEYS - set(result)
    assert result["mode"] == "embedded" and result["n"] == 40
    assert result["lost"] == 0 and result["duplicated"] == 0
    for key in KEYS - {"mode", "n", "lost", "duplicated"}:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]) and result[key] > 0, key
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["ratio_to_encoder"] == pytest.approx(result["mentions_per_s"] / result["encoder_texts_per_s"],
                                                       rel=0.01, abs=0.001)  # both sides are rounded


@pytest.mark.timeout(450)
def test_peak_rss_is_the_services_not_the_comparison_encoders(shared_data):
    code = "import json\n" + FAT_ENCODER.format(root=str(ROOT), args=ARGS)
    lines = run(["-c", code], shared_data)
    result, seen = json.loads(lines[0]), json.loads(lines[1])
    assert seen["final_mb"] >= seen["before_encoder_mb"] + 100  # the ballast did raise the peak
    assert result["peak_rss_mb"] <= seen["before_encoder_mb"] + 1, (result, seen)  # ... after it was read


@pytest.mark.timeout(450)
def test_another_corpus_in_the_same_layout_can_be_replayed(shared_data, tmp_path):
    """The evaluation may replay another brand's file: any CSV in the corpus layout, outbound rows
    (the brand's own replies) left out."""
    import csv

    source = shared_data("twcs/spotifycares_inbound.csv")
    with open(source, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [next(reader) for _ in range(30)]
        fields = reader.fieldnames
    for i, row in enumerate(rows[:10]):  # the brand answering: not customer mentions
        rows.append({**row, "tweet_id": f"9{i}00000", "inbound": "False", "author_id": "AcmeHelp"})
    corpus = tmp_path / "acmehelp_all.csv"
    with corpus.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    args = ["--mode", "embedded", "--triage", "cascade", "--n", "45", "--encoder-sample", "16", "--timeout", "300",
            "--corpus", str(corpus)]
    result = json.loads(run(["bench/pipeline.py", *args], shared_data)[0])
    assert result["n"] == 45 and result["lost"] == 0 and result["duplicated"] == 0  # 30 inbound, cycled
