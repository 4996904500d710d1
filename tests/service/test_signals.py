"""Stopping a long-running command (service.cli.lifecycle), as an operator does it: the first SIGTERM
starts the graceful stop and says so; a second one cuts the drain short, says what it abandons, and
the process exits at once with 128 + the signal's number (143), not after the whole drain."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

BIN = Path(sys.executable).with_name("socialcare")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.timeout(420)
def test_a_second_sigterm_cuts_the_drain_of_run_short_and_says_what_it_abandons(tmp_path):
    """`socialcare run` whose ingest stage cannot write (an admin holds SQLite's write lock) would
    drain for SOCIALCARE_SHUTDOWN_DRAIN_SECONDS; the second SIGTERM ends it within seconds."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALCARE_")}
    env.update(SOCIALCARE_COOKIE_SECURE="false", SOCIALCARE_LOG_LEVEL="INFO", SOCIALCARE_DEMO="false",
               SOCIALCARE_SHUTDOWN_DRAIN_SECONDS="120", SOCIALCARE_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    subprocess.run([str(BIN), "db", "upgrade"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    log_path = tmp_path / "run.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([str(BIN), "run", "--no-demo", "--port", str(port)], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    lock = None
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, 240, "/healthz")
        lock = sqlite3.connect(tmp_path / "var" / "socialcare.db", isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")  # every write of the service waits from here on
        rows = tmp_path / "rows.jsonl"
        rows.write_text("".join(json.dumps({"platform": "x", "external_id": f"90000000000000000{i}",
                                            "created_at": "2026-11-21T09:00:00Z", "text": f"@AcmeHelp help {i}",
                                            "author_handle": f"sig{i}"}) + "\n" for i in range(2)))
        sent = subprocess.run([str(BIN), "replay", str(rows)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        time.sleep(1.0)  # the ingest stage has the batch in hand, waiting for the lock
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: b"stopping gracefully" in log_path.read_bytes(), 30, "the graceful stop's log line")
        time.sleep(2.0)
        assert proc.poll() is None, "the drain ended although the queue cannot drain"
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("a second SIGTERM did not stop `socialcare run`: " + log_path.read_text()[-2000:])
        assert time.monotonic() - started < 15
        assert code == 128 + signal.SIGTERM
        text = log_path.read_text()
        assert "SIGTERM again: stopping now" in text and "abandoned:" in text
        abandoned = next(line for line in text.splitlines() if "abandoned:" in line)
        assert "ingest 2" in abandoned, abandoned
    finally:
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
