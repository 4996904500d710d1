"""`socialcare db upgrade|current` in an empty directory: says what it did, in one line, without
alembic's start-up chatter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).with_name("socialcare")


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALCARE_")}
    env["SOCIALCARE_LOG_LEVEL"] = "INFO"  # even at INFO, alembic's plug-in and dialect lines stay out
    return subprocess.run([str(BIN), "db", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=True)


def test_upgrade_says_what_it_did_and_then_that_nothing_was_left(tmp_path):
    assert run(tmp_path, "current").stdout.strip() == "empty database"
    first = run(tmp_path, "upgrade")
    revision = run(tmp_path, "current").stdout.strip()
    assert revision.isdigit()
    assert first.stdout.strip() == f"database at revision {revision} (was empty)"
    assert "alembic" not in first.stderr and "setup plugin" not in first.stderr
    again = run(tmp_path, "upgrade")
    assert again.stdout.strip() == f"database at revision {revision} (nothing to do)"
    assert again.stderr == ""
