"""`socialcare connectors check` and `socialcare connectors fetch NAME --once`, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from .fakes.discourse import API_KEY, FakeDiscourse, post
from .fakes.x_api import FakeX, tweet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def servers():
    x, forum = FakeX(tweets=[tweet(i) for i in range(3)]), FakeDiscourse(posts=[post(100 + i, number=1 + i) for i in range(2)])
    started = []
    for fake in (x, forum):
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        fake.base = str(server.make_url("")).rstrip("/")
        started.append(server)
    yield x, forum
    for server in started:
        await server.close()


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALCARE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "connectors", *args, cwd=ROOT, env={**clean, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def env_for(x, forum, db: str, **extra: str) -> dict[str, str]:
    return {"SOCIALCARE_X_API_BASE": x.base, "SOCIALCARE_X_BEARER_TOKEN": "test", "SOCIALCARE_X_USER_ID": "99",
            "SOCIALCARE_DISCOURSE_URL": forum.base, "SOCIALCARE_DISCOURSE_API_KEY": API_KEY,
            "SOCIALCARE_DISCOURSE_API_USERNAME": "acme_support", "SOCIALCARE_DATABASE_URL": db, **extra}


async def test_fetch_prints_contract_lines_and_saves_the_cursor_only_when_asked(servers, sqlite_url):
    x, forum = servers
    env = env_for(x, forum, sqlite_url)
    code, out, err = await cli(env, "fetch", "x", "--once")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert [m["external_id"] for m in lines] == [t["id"] for t in x.tweets]
    assert set(lines[0]) == {"platform", "external_id", "author_handle", "text", "created_at", "conversation_id",
                             "in_reply_to", "url"} and lines[0]["created_at"].endswith("Z")
    code, out, _ = await cli(env, "fetch", "x", "--once", "--save")  # a look leaves the cursor for the service
    assert [json.loads(line)["external_id"] for line in out.splitlines()] == [t["id"] for t in x.tweets]
    x.tweets.append(tweet(9))
    code, out, _ = await cli(env, "fetch", "x", "--once")  # from the saved cursor: only the new one
    assert [json.loads(line)["external_id"] for line in out.splitlines()] == [tweet(9)["id"]]
    code, out, _ = await cli(env, "fetch", "discourse", "--once")
    assert code == 0 and [json.loads(line)["external_id"] for line in out.splitlines()] == ["40/1", "40/2"]
    code, _, err = await cli(env, "fetch", "reddit", "--once")
    assert code != 0 and "not configured" in err and "configured here: x, discourse" in err
    code, _, err = await cli(env, "fetch", "twitter", "--once")  # a typo is not "not configured"
    assert code != 0 and "no connector is called 'twitter'" in err and "x, x-stream, reddit, discourse" in err


async def test_a_fetch_without_save_does_not_take_mentions_from_the_service(servers, sqlite_url):
    """An operator's look with `fetch` while the service is down: its next start still ingests them."""
    from listener.cursors import CursorStore
    from models.db import Database

    x, forum = servers
    code, out, err = await cli(env_for(x, forum, sqlite_url), "fetch", "x", "--once")
    assert code == 0 and len(out.splitlines()) == len(x.tweets), err
    db = Database(sqlite_url)
    try:
        assert await CursorStore(db).get("x") is None  # where the service starts from: before them all
    finally:
        await db.close()


async def test_check_reports_each_connector_and_fails_on_bad_credentials(servers, sqlite_url):
    x, forum = servers
    code, out, err = await cli(env_for(x, forum, sqlite_url), "check")
    results = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0, err
    assert results["x"]["ok"] and "mentions of user 99" in results["x"]["listens_to"]
    assert results["discourse"]["ok"] and results["discourse"]["account"] == "acme_support"
    code, out, _ = await cli(env_for(x, forum, sqlite_url, SOCIALCARE_DISCOURSE_API_KEY="revoked"), "check")
    results = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert code == 1 and results["x"]["ok"] and not results["discourse"]["ok"]
    assert "403" in results["discourse"]["error"] and "revoked" not in out


async def test_check_tries_the_x_keys_replies_need_not_only_the_bearer_token(servers, sqlite_url):
    x, forum = servers
    keys = {"SOCIALCARE_X_API_KEY": "k", "SOCIALCARE_X_API_SECRET": "wrong", "SOCIALCARE_X_ACCESS_TOKEN": "t",
            "SOCIALCARE_X_ACCESS_SECRET": "a"}
    x.user_keys_ok = False  # the bearer token reads mentions; the OAuth 1.0a keys are refused
    code, out, _ = await cli(env_for(x, forum, sqlite_url, **keys), "check")
    results = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert code == 1 and not results["x"]["ok"]
    assert "user-context keys" in results["x"]["error"] and "401" in results["x"]["error"]
    x.user_keys_ok = True
    code, out, _ = await cli(env_for(x, forum, sqlite_url, **keys), "check")
    results = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and results["x"]["account"] == "acme_help"


async def test_fetch_help_names_the_connectors_and_what_saving_costs():
    code, out, _ = await cli({}, "fetch", "--help")
    assert code == 0 and "x, x-stream, reddit, discourse" in out and "--save / --no-save" in out
    assert "never ingests" in " ".join(out.split())
