"""The triage command-line contract: JSON keys, label validation, custom taxonomies."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from service.cli import main

KEYS = ("n", "accuracy", "macro_f1", "macro_recall", "per_label")


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def last_json(output: str) -> dict:
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def test_score_prints_every_score_and_no_raw_pii():
    result = CliRunner().invoke(main, ["triage", "score", "My account was hacked, card 4111 1111 1111 1111"])
    assert result.exit_code == 0, result.output
    doc = last_json(result.output)
    for key in ("sentiment", "sensitivity", "issue_type", "toxicity", "spam", "pii", "pii_exposed", "escalate",
                "language", "priority", "model_version"):
        assert key in doc
    assert doc["escalate"] is True and doc["pii"][0]["type"] == "card_number"
    assert "4111 1111 1111 1111" not in result.output


def test_eval_reports_the_metrics_and_escalation_figures(tmp_path):
    data = write_csv(tmp_path / "sens.csv", [
        ("someone hacked my account and changed my password", "security"),
        ("there are charges on my card I never made", "fraud"),
        ("how do I change my profile picture", "none"),
        ("I was charged twice this month, please refund one", "account"),
    ])
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "sensitivity", "--data", str(data)])
    assert result.exit_code == 0, result.output
    doc = last_json(result.output)
    assert all(k in doc for k in KEYS) and doc["n"] == 4
    assert set(doc["per_label"]) == {"none", "account", "security", "fraud"}
    assert doc["escalate_recall"] == 1.0 and 0 <= doc["escalate_precision"] <= 1


def test_eval_refuses_unknown_labels(tmp_path):
    data = write_csv(tmp_path / "bad.csv", [("hello", "not_a_label")])
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "sentiment", "--data", str(data)])
    assert result.exit_code != 0
    assert "not_a_label" in result.output


def test_eval_refuses_a_file_without_the_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("sentence,tag\nhi,positive\n")
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "sentiment", "--data", str(path)])
    assert result.exit_code != 0 and "text,label" in result.output


def test_eval_reads_a_spreadsheets_csv_with_a_byte_order_mark_and_capitalised_headers(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffLabel,Text,Note\r\nsecurity,someone hacked my account and changed my email,a\r\n"
                     "none,how do I change my profile picture,b\r\n".encode())
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "sensitivity", "--data", str(path)])
    assert result.exit_code == 0, result.output
    doc = last_json(result.output)
    assert doc["n"] == 2 and doc["per_label"]["security"]["support"] == 1 and doc["escalate_recall"] == 1.0


def test_a_custom_issue_taxonomy_trains_and_evaluates(tmp_path):
    rows = [(f"where is my parcel number {i}", "parcel_tracking") for i in range(8)]
    rows += [(f"I want to book a table for {i} people", "reservation") for i in range(8)]
    rows += [(f"the food was cold when table {i} got it", "food_quality") for i in range(8)]
    data = write_csv(tmp_path / "custom.csv", rows)
    model = tmp_path / "model"
    result = CliRunner().invoke(main, ["triage", "train", "--task", "issue_type", "--data", str(data), "--out", str(model)])
    assert result.exit_code == 0, result.output
    assert (model / "issue_type.npz").exists()
    test = write_csv(tmp_path / "test.csv", [("where is my parcel? it's late", "parcel_tracking"),
                                            ("can I book a table for two tonight", "reservation"),
                                            ("my soup was cold", "food_quality")])
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "issue_type", "--data", str(test), "--model", str(model)])
    assert result.exit_code == 0, result.output
    doc = last_json(result.output)
    assert set(doc["per_label"]) == {"parcel_tracking", "reservation", "food_quality"}
    assert doc["accuracy"] >= 2 / 3


def test_a_few_intents_the_training_split_lacked_count_as_errors_but_a_foreign_file_is_refused(tmp_path):
    rows = [(f"where is my parcel number {i}", "parcel_tracking") for i in range(8)]
    rows += [(f"I want to book a table for {i} people", "reservation") for i in range(8)]
    model = tmp_path / "model"
    result = CliRunner().invoke(main, ["triage", "train", "--task", "issue_type", "--data",
                                       str(write_csv(tmp_path / "train.csv", rows)), "--out", str(model)])
    assert result.exit_code == 0, result.output
    mostly_known = [(f"is parcel {i} on its way?", "parcel_tracking") for i in range(30)] + [("hello", "greeting")]
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "issue_type", "--model", str(model),
                                       "--data", str(write_csv(tmp_path / "few.csv", mostly_known))])
    assert result.exit_code == 0, result.output
    doc = last_json(result.output)
    assert doc["unknown_labels"] == ["greeting"] and doc["per_label"]["greeting"]["recall"] == 0.0
    assert doc["n"] == 31 and doc["accuracy"] <= 30 / 31
    foreign = [("hello", "greeting"), ("bye", "farewell"), ("where is my parcel?", "parcel_tracking")]
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "issue_type", "--model", str(model),
                                       "--data", str(write_csv(tmp_path / "foreign.csv", foreign))])
    assert result.exit_code != 0
    assert "farewell" in result.output and "greeting" in result.output


def test_the_bundled_issue_taxonomy_refuses_labels_it_does_not_have(tmp_path):
    data = write_csv(tmp_path / "x.csv", [("where is my parcel?", "parcel_tracking")])
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "issue_type", "--data", str(data)])
    assert result.exit_code != 0 and "parcel_tracking" in result.output


def test_train_refuses_labels_of_another_task(tmp_path):
    data = write_csv(tmp_path / "bad.csv", [("hi", "happy"), ("bye", "sad")])
    result = CliRunner().invoke(main, ["triage", "train", "--task", "sentiment", "--data", str(data), "--out",
                                       str(tmp_path / "m")])
    assert result.exit_code != 0 and "happy" in result.output
