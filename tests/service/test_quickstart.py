"""The README quick start, as a user runs it: `socialcare db upgrade` and `socialcare run` in a fresh
directory stream the bundled demo and serve the console; `socialcare replay FILE` feeds the running
service, reporting a broken line by its number and losing none of the others."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

BIN = Path(sys.executable).with_name("socialcare")
DEMO_MENTIONS = 429


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except requests.RequestException:
            found = None
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def service(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALCARE_")}
    env.update(SOCIALCARE_COOKIE_SECURE="false", SOCIALCARE_LOG_LEVEL="WARNING",
               SOCIALCARE_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    subprocess.run([str(BIN), "db", "upgrade"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([str(BIN), "run", "--port", str(port)], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 180, "/healthz")
        yield base, tmp_path, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.timeout(420)
def test_run_streams_the_demo_serves_the_console_and_replay_feeds_it(service):
    base, cwd, env = service
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    assert (cwd / "var" / "socialcare.db").exists()  # the SQLite file under ./var
    http = requests.Session()
    password = (cwd / "var" / "demo-password").read_text().strip()
    r = http.post(f"{base}/login", data={"username": "demo", "password": password, "next": "/mentions"}, timeout=10)
    assert r.ok and "/login" not in r.url

    def routed() -> int:  # the API lists routed mentions only
        page = http.get(f"{base}/api/v1/mentions", params={"limit": 500}, timeout=10).json()
        n = sum(1 for m in page["mentions"] if m["route"])
        return n if n >= DEMO_MENTIONS else 0

    wait_for(routed, 240, "the demo to be routed")
    page = http.get(f"{base}/mentions", timeout=10).text
    assert "escalate_private" in page and "auto_answer" in page and "moderate" in page

    replayed = cwd / "extra.jsonl"
    rows = [{"platform": "x", "external_id": "9000000000000000001", "created_at": "2026-11-21T09:00:00Z",
             "text": "@AcmeHelp quickstart replay: the TV app keeps asking me to sign in again", "author_handle": "qs1"},
            "{not json",
            {"platform": "x", "external_id": "9000000000000000002", "created_at": "2026-11-21T09:00:05Z",
             "text": "@AcmeHelp quickstart replay: love the new sleep timer", "author_handle": "qs2"}]
    replayed.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    done = subprocess.run([str(BIN), "replay", str(replayed)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 2 and summary["rejected"] == 1
    assert re.search(rf"{re.escape(str(replayed))}:2: rejected", done.stderr)
    wait_for(lambda: "quickstart replay: love the new sleep timer" in http.get(f"{base}/mentions?limit=500",
                                                                              timeout=10).text,
             120, "the replayed mentions to be routed")
    page = http.get(f"{base}/mentions?limit=500", timeout=10).text
    assert "quickstart replay: the TV app keeps asking me to sign in again" in page


@pytest.mark.timeout(420)
def test_replay_of_a_twcs_export_into_the_service_rejects_bad_rows_by_line_and_sends_every_other(service):
    """A row ingest refuses (no tweet_id, an author_id longer than the column) used to fail its whole
    batch at the service: exit 1, nothing in the rejects file, and the batch's line number."""
    base, cwd, env = service
    when = "Tue Oct 31 22:10:47 +0000 2017"
    replayed = cwd / "export.csv"
    replayed.write_text("\r\n".join([
        "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id",
        f"9100000000000000001,115712,t,{when},@AcmeHelp twcs replay: my order never arrived,,",
        f",115713,True,{when},@AcmeHelp twcs replay: no tweet id,,",
        "",
        f"9100000000000000003,{'u' * 80},True,{when},@AcmeHelp twcs replay: a long author,,",
        f"9100000000000000004,AcmeHelp,f,{when},@115712 sorry to hear that,,9100000000000000001",
        f"9100000000000000005,115714,TRUE,{when},@AcmeHelp twcs replay: the app logs me out,,",
    ]) + "\r\n")
    done = subprocess.run([str(BIN), "replay", str(replayed)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["sent"], summary["rejected"], summary["skipped"]) == (2, 2, 1)
    for line, column in ((3, "tweet_id"), (5, "author_id")):
        assert re.search(rf"{re.escape(str(replayed))}:{line}: rejected: {column}", done.stderr), done.stderr
    kept = [json.loads(x) for x in (cwd / summary["rejects_file"]).read_text().splitlines()]
    assert [k["line"] for k in kept] == [3, 5]
    http = requests.Session()
    password = (cwd / "var" / "demo-password").read_text().strip()
    http.post(f"{base}/login", data={"username": "demo", "password": password, "next": "/mentions"}, timeout=10)
    wait_for(lambda: "twcs replay: the app logs me out" in http.get(f"{base}/mentions?limit=500", timeout=10).text,
             240, "the replayed rows to be routed")
    page = http.get(f"{base}/mentions?limit=500", timeout=10).text
    assert "twcs replay: my order never arrived" in page and "sorry to hear that" not in page
