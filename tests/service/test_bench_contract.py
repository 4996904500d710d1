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
    rows.append({**rows[0], "tweet_id": ""})  # a row the replay rejects: counted in the output
    corpus = tmp_path / "acmehelp_all.csv"
    with corpus.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    args = ["--mode", "embedded", "--triage", "cascade", "--n", "45", "--encoder-sample", "16", "--timeout", "300",
            "--corpus", str(corpus)]
    result = json.loads(run(["bench/pipeline.py", *args], shared_data)[0])
    assert result["n"] == 45 and result["lost"] == 0 and result["duplicated"] == 0  # 30 inbound, cycled
    assert result["rejected"] == 1


def corpus_file(tmp_path: Path, rows: list[str], name: str = "corpus.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(["tweet_id,author_id,inbound,created_at,text", *rows]) + "\n", encoding=encoding)
    return path


WHEN = "Tue Oct 31 22:10:47 +0000 2017"


def test_rows_of_the_corpus_left_out_are_counted_and_the_first_reasons_said(tmp_path, capsys):
    from bench.common import corpus_rejected, corpus_size

    rows = [f"{i},u{i},True,{WHEN},post {i}" for i in range(1, 4)]
    path = corpus_file(tmp_path, [rows[0], f",u9,True,{WHEN},no id", *rows[1:], *(f"{i},u{i},maybe,{WHEN},x"
                                                                             for i in range(10, 17))])
    assert (corpus_size(path), corpus_rejected(path)) == (3, 8)
    err = capsys.readouterr().err
    assert f"corpus {path}: 8 of 11 row(s) rejected" in err and "line 3: tweet_id" in err and "line 6: inbound" in err
    assert "line 11:" not in err  # the first few, not every one


@pytest.mark.parametrize(("rows", "encoding", "why"), [
    ([f"1,u1,True,{WHEN},hi"], "utf-16", "UTF-16"),
    ([f"1,Brand,False,{WHEN},hi"], "utf-8", "1 row(s) are the brand's own"),
    ([f"1,u1,t,{WHEN}"], "utf-8", "missing text"),
])
def test_a_corpus_with_no_usable_row_names_the_reason(tmp_path, rows, encoding, why):
    """It used to say only "holds no inbound mentions", whether the file was UTF-16 or had a typo."""
    from bench.common import load_corpus

    with pytest.raises(SystemExit) as stop:
        load_corpus(10, corpus_file(tmp_path, rows, encoding=encoding))
    assert "holds no inbound mentions" in str(stop.value) and why in str(stop.value)


def test_a_corpus_of_json_lines_is_read_whatever_its_name_and_headers_in_any_case(tmp_path):
    from bench.common import corpus_size

    jsonl = tmp_path / "corpus.txt"
    jsonl.write_text(json.dumps({"tweet_id": "1", "author_id": "u1", "inbound": "True", "created_at": WHEN,
                                 "text": "hi"}) + "\n")
    caps = tmp_path / "caps.csv"
    caps.write_text(f"Tweet_id,Author_id,Inbound,Created_at,Text\n1,u1,True,{WHEN},hi\n")
    assert corpus_size(jsonl) == corpus_size(caps) == 1
