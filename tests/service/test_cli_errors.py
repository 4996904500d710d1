"""A command that cannot do its work says why in one line and exits non-zero: no traceback for a
database, file or model directory that is not there, and options out of range are refused up front."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from service.cli import main


def run(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(main, args, env=env)


def one_line_error(result) -> str:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_model_directory_without_heads_is_an_error_not_the_bundled_heads_in_silence(tmp_path):
    line = one_line_error(run(["triage", "score", "hello"], env={"SOCIALCARE_TRIAGE_MODEL_DIR": str(tmp_path / "typo")}))
    assert "no trained heads" in line and "typo" in line


def test_a_database_url_that_is_not_one_is_named_in_one_line(tmp_path):
    line = one_line_error(run(["users", "list"], env={"SOCIALCARE_DATABASE_URL": "nonsense"}))
    assert "URL" in line


def test_a_head_that_cannot_be_written_is_refused_before_the_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    data = tmp_path / "d.csv"
    data.write_text("text,label\nwhere is my parcel,parcel\nbook a table,booking\n")
    line = one_line_error(run(["triage", "train", "--task", "issue_type", "--data", str(data),
                               "--out", str(blocker / "model")]))
    assert "cannot write the head" in line


@pytest.mark.parametrize("args", [
    ["triage", "eval", "--task", "sentiment", "--data", "README.md", "--batch", "0"],
    ["triage", "eval", "--task", "sentiment", "--data", "README.md", "--batch", "-5"],
    ["triage", "train", "--task", "issue_type", "--data", "README.md", "--out", "x", "--c", "0"],
    ["triage", "train", "--task", "issue_type", "--data", "README.md", "--out", "x", "--lexical-dim", "-1"],
    ["worker", "--stage", "triage", "--concurrency", "0"],
    ["worker", "--stage", "triage", "--metrics-port", "99999"],
    ["run", "--port", "99999"],
    ["replay", "README.md", "--speed", "-5"],
])
def test_options_out_of_range_are_refused_before_anything_runs(args):
    result = run(args)
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output


def test_a_csv_field_over_the_csv_modules_limit_is_a_clear_error(tmp_path):
    data = tmp_path / "big.csv"
    data.write_text("text,label\n\"" + "a" * 200_000 + "\",positive\n")
    line = one_line_error(run(["triage", "eval", "--task", "sentiment", "--data", str(data)]))
    assert "not a readable CSV" in line


def test_a_replay_file_with_nothing_usable_exits_non_zero(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    (var / "ingest.token").write_text("t")  # a running service's token (nothing is sent: no line is usable)
    data = tmp_path / "wrong.csv"
    data.write_text("sentence,tag\nhello,x\n")
    result = CliRunner().invoke(main, ["replay", str(data)], env={"SOCIALCARE_VAR_DIR": str(var)})
    assert result.exit_code == 1, result.output
    assert "no 'text' column" in result.output and '"sent": 0' in result.output


@pytest.mark.parametrize("args", [["triage", "score", ""], ["triage", "score", "   "],
                                  ["users", "token", "alice", "--name", "", "--scope", "mentions:read"]])
def test_empty_input_is_a_usage_error(args):
    result = run(args)
    assert result.exit_code == 2 and "Usage" in result.output, result.output
