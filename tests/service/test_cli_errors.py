"""A command that cannot do its work says why in one line and exits non-zero: no traceback for a
database, file or model directory that is not there, and options out of range are refused up front."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def replay_with_token(tmp_path, data, *args):  # noqa: ANN001, ANN201
    var = tmp_path / "var"
    var.mkdir(exist_ok=True)
    (var / "ingest.token").write_text("t")
    return CliRunner().invoke(main, ["replay", str(data), *args], env={"SOCIALCARE_VAR_DIR": str(var)})


def test_a_replay_file_that_sends_nothing_exits_non_zero_though_no_line_was_rejected(tmp_path):
    """Only the brand's own tweets (inbound false): nothing to send, which a script must notice."""
    data = tmp_path / "outbound.csv"
    data.write_text("tweet_id,author_id,inbound,created_at,text\n"
                    "1,Brand,False,Tue Oct 31 22:10:47 +0000 2017,@u1 hello\n")
    result = replay_with_token(tmp_path, data)
    assert result.exit_code == 1, result.output
    assert '"sent": 0' in result.output and '"skipped": 1' in result.output and "inbound false" in result.output


class RefusingIngest(BaseHTTPRequestHandler):
    """The service's ingest: a body line with "refuse me" fails the whole batch (400 naming it)."""

    bodies: list[list[dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        lines = self.rfile.read(int(self.headers["Content-Length"])).decode().split("\n")
        bad = [{"line": i, "error": "author_id: not here"} for i, line in enumerate(lines, 1) if "refuse me" in line]
        if not bad:
            self.bodies.append([json.loads(line) for line in lines])
        self.send_response(400 if bad else 202)
        self.end_headers()
        self.wfile.write(json.dumps({"error": {"status": 400, "message": "bad lines", "lines": bad}}
                                    if bad else {"accepted": len(lines)}).encode())

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


def test_a_line_the_service_refuses_is_rejected_by_its_line_in_the_file_and_its_batch_sent(tmp_path):
    """A refused batch used to stop the replay (exit 1) naming the batch's line, the rest unsent."""
    rows = [{"external_id": str(i), "text": "refuse me" if i == 3 else f"post {i}\u2028second line",
             "created_at": "2026-11-20T08:00:00Z"} for i in range(1, 6)]
    data = tmp_path / "in.jsonl"
    data.write_text("\n\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingIngest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = replay_with_token(tmp_path, data, "--url", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert [[m["external_id"] for m in body] for body in RefusingIngest.bodies] == [["1", "2", "4", "5"]]
    assert RefusingIngest.bodies[0][0]["text"] == "post 1\u2028second line"  # one JSON line, whatever it holds
    assert f"{data}:5: rejected: refused by the service: author_id: not here" in result.output
    assert json.loads(result.stdout.splitlines()[-1])["rejected"] == 1
    kept = [json.loads(line) for line in (tmp_path / "var" / "rejects" / "in.jsonl.jsonl").read_text().splitlines()]
    assert [k["line"] for k in kept] == [5]


@pytest.mark.parametrize("args", [["triage", "score", ""], ["triage", "score", "   "],
                                  ["users", "token", "alice", "--name", "", "--scope", "mentions:read"]])
def test_empty_input_is_a_usage_error(args):
    result = run(args)
    assert result.exit_code == 2 and "Usage" in result.output, result.output
