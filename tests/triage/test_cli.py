"""The triage command-line contract: JSON keys, label validation, custom taxonomies."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
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


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    """A custom issue taxonomy trained once for the module (a few dozen rows): its directory and the
    `triage train` result."""
    tmp = tmp_path_factory.mktemp("custom")
    rows = [(f"where is my parcel number {i}", "Parcel_tracking") for i in range(8)]
    rows += [(f"I want to book a table for {i} people", "reservation") for i in range(8)]
    rows += [(f"the food was cold when table {i} got it", "food_quality") for i in range(8)]
    model = tmp / "model"
    result = CliRunner().invoke(main, ["triage", "train", "--task", "issue_type", "--data",
                                       str(write_csv(tmp / "train.csv", rows)), "--out", str(model)])
    assert result.exit_code == 0, result.output
    return model, result


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


# --- the figures are scikit-learn's default definitions (evaluators recompute them with it) ---

def test_macro_figures_average_over_every_label_in_the_file_or_the_predictions_as_sklearn_does():
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, recall_score

    from triage.train import evaluate

    y_true = ["refund", "refund", "refund", "card_lost", "card_lost", "pin"]
    y_pred = ["refund", "top_up", "refund", "card_lost", "top_up", "refund"]  # top_up: predicted, never true
    doc = evaluate(y_true, y_pred, ["card_lost", "pin", "refund", "top_up", "atm"])  # atm: in neither
    assert doc["accuracy"] == round(accuracy_score(y_true, y_pred), 4)
    assert doc["macro_f1"] == round(f1_score(y_true, y_pred, average="macro", zero_division=0), 4)
    assert doc["macro_recall"] == round(recall_score(y_true, y_pred, average="macro", zero_division=0), 4)
    union = sorted(set(y_true) | set(y_pred))
    for label, p, r, f, n in zip(union, *precision_recall_fscore_support(y_true, y_pred, labels=union,
                                                                           zero_division=0)):
        assert doc["per_label"][label] == {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
                                           "support": n}
    assert doc["per_label"]["atm"]["support"] == 0


def test_per_label_figures_name_a_predicted_label_the_caller_did_not_list():
    from triage.train import evaluate

    doc = evaluate(["a", "b"], ["a", "c"], ["a", "b"])
    assert doc["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert doc["macro_recall"] == 0.3333 and doc["macro_f1"] == 0.3333


def test_eval_of_a_custom_taxonomy_counts_a_label_the_model_predicts_but_the_file_lacks(custom_model, tmp_path):
    from sklearn.metrics import f1_score, recall_score

    model, _ = custom_model
    rows = [("where is my parcel? it's late", "Parcel_tracking"), ("can I book a table for two tonight", "reservation"),
            ("my soup was cold and the fries were cold too", "reservation")]  # the model reads food_quality
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "issue_type", "--model", str(model),
                                       "--data", str(write_csv(tmp_path / "t.csv", rows))])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    y_true, y_pred = [label for _, label in rows], ["Parcel_tracking", "reservation", "food_quality"]
    assert doc["accuracy"] == round(2 / 3, 4)
    assert doc["per_label"]["food_quality"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert doc["macro_f1"] == round(f1_score(y_true, y_pred, average="macro"), 4)
    assert doc["macro_recall"] == round(recall_score(y_true, y_pred, average="macro", zero_division=0), 4)


def test_a_bad_row_is_named_by_the_file_line_it_starts_on(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('text,label\n"my card\nwas stolen\nyesterday",negative\n\n"and the app\nis down",\n',
                    encoding="utf-8")  # the second row starts on line 6: a 3-line text and a blank line before it
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "sentiment", "--data", str(path)])
    assert result.exit_code == 1
    assert f"{path}:6: empty text or label" in result.output


# --- training says what it is doing, and fails before the long part ---

def test_train_says_on_stderr_which_head_it_is_fitting_and_prints_only_json_on_stdout(custom_model):
    model, result = custom_model
    assert json.loads(result.stdout) == {"task": "issue_type", "labels": ["Parcel_tracking", "food_quality",
                                                                          "reservation"], "n": 24, "out": str(model)}
    assert "fitting head 1/2" in result.stderr and "fitting head 2/2" in result.stderr
    assert result.stderr.index("fitting head 1/2") < result.stderr.index("fitting head 2/2")


def test_a_file_that_cannot_train_a_head_fails_before_encoding_and_leaves_no_directory(tmp_path, monkeypatch):
    import triage.train

    def no_encoding(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("encoded a file that cannot train a head")

    monkeypatch.setattr(triage.train, "embed", no_encoding)
    one_label = write_csv(tmp_path / "one.csv", [(f"where is parcel {i}", "parcel") for i in range(5)])
    out = tmp_path / "new" / "model"
    result = CliRunner().invoke(main, ["triage", "train", "--task", "issue_type", "--data", str(one_label),
                                       "--out", str(out)])
    assert result.exit_code == 1 and "needs at least two labels" in result.output, result.output
    assert not (tmp_path / "new").exists()


def test_a_training_that_fails_removes_the_directory_it_created_but_keeps_one_that_was_there(tmp_path, monkeypatch):
    import triage.train

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003
        raise triage.train.DataError("the encoder failed")

    monkeypatch.setattr(triage.train, "embed", failing)
    data = write_csv(tmp_path / "d.csv", [("where is my parcel", "parcel"), ("book a table", "booking")])
    for out, kept in ((tmp_path / "fresh", False), (tmp_path, True)):
        result = CliRunner().invoke(main, ["triage", "train", "--task", "issue_type", "--data", str(data),
                                           "--out", str(out)])
        assert result.exit_code == 1 and "the encoder failed" in result.output
        assert out.exists() is kept


# --- a fixed task's labels in another case are its labels; a custom taxonomy's are kept as written ---

def test_eval_reads_a_fixed_tasks_labels_in_any_case_and_with_spaces(tmp_path):
    data = write_csv(tmp_path / "caps.csv", [("I love this, thank you so much!", "Positive"),
                                             ("this is the worst service ever", " NEGATIVE "),
                                             ("the store opens at nine", "Neutral")])
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "sentiment", "--data", str(data)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["n"] == 3 and set(doc["per_label"]) == {"negative", "neutral", "positive"}
    assert all(doc["per_label"][label]["support"] == 1 for label in ("negative", "neutral", "positive"))


def test_escalation_figures_read_sensitivity_labels_in_any_case(tmp_path):
    data = write_csv(tmp_path / "sens.csv", [("someone hacked my account and changed my password", "Security"),
                                             ("there are charges on my card I never made", "FRAUD"),
                                             ("how do I change my profile picture", "None")])
    result = CliRunner().invoke(main, ["triage", "eval", "--task", "sensitivity", "--data", str(data)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["escalate_recall"] == 1.0 and doc["per_label"]["security"]["support"] == 1


def test_train_reads_a_fixed_tasks_labels_in_any_case(tmp_path, monkeypatch):
    import numpy as np

    import triage.train

    monkeypatch.setattr(triage.train, "embed", lambda texts, *a, **k: np.random.default_rng(0).normal(
        size=(len(texts), 8)).astype(np.float32))  # the labels are the point here, not the features
    rows = [(f"you are an idiot number {i}", "Offensive") for i in range(6)]
    rows += [(f"have a nice day number {i}", "NOT_OFFENSIVE ") for i in range(6)]
    result = CliRunner().invoke(main, ["triage", "train", "--task", "toxicity", "--data",
                                       str(write_csv(tmp_path / "tox.csv", rows)), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["labels"] == ["not_offensive", "offensive"]
