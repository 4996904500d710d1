"""The runner's waiting rules and isolation: one connector's bad credentials stop only that connector."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp.test_utils import TestServer

from listener.backoff import Backoff, jittered, rate_limit_wait
from listener.cursors import MemoryCursorStore
from listener.runner import run_connector
from listener.x.connector import XConnector
from listener.x.recheck import since_id
from service.settings import load_settings

from .fakes.x_api import FakeX, tweet


def test_backoff_grows_exponentially_is_capped_and_jittered():
    rng = random.Random(7)
    samples = {n: [jittered(n, 1.0, 60.0, rng) for _ in range(400)] for n in (1, 3, 10)}
    assert all(0 <= s <= 2 for s in samples[1]) and all(0 <= s <= 8 for s in samples[3])
    assert all(s <= 60 for s in samples[10]) and max(samples[10]) > 50  # capped, yet spread up to the cap
    assert len({round(s, 6) for s in samples[3]}) > 300  # jitter: no lock-step retries
    b = Backoff(0.5, 10.0, random.Random(1))
    assert [b.next_delay() <= 0.5 * 2 ** i for i in range(1, 4)] == [True] * 3 and b.failures == 3
    b.reset()
    assert b.failures == 0


def test_rate_limit_wait_honours_the_reset_moment_or_retry_after():
    assert rate_limit_wait(reset_at=1000.0, now=990.0) == pytest.approx(11.0)  # 10 s plus a second of slack
    assert rate_limit_wait(reset_at=900.0, now=990.0) == pytest.approx(1.0)  # already past: just the slack
    assert rate_limit_wait(retry_after=42, reset_at=5000.0, now=0.0) == 42
    assert rate_limit_wait(default=60.0) == 60.0


@pytest.fixture
async def two_fakes():
    fakes, servers = [], []
    for _ in range(2):
        x = FakeX(tweets=[tweet(i) for i in range(3)])
        server = TestServer(x.app(), host="127.0.0.1")
        await server.start_server()
        x.base = str(server.make_url("")).rstrip("/")
        fakes.append(x)
        servers.append(server)
    yield fakes
    for server in servers:
        await server.close()


async def test_an_auth_error_stops_one_connector_while_another_keeps_running(two_fakes, caplog):
    bad_fake, good_fake = two_fakes
    bad_fake.fail_next = [(401, {})]
    bad = XConnector(load_settings(x_api_base=bad_fake.base, x_bearer_token="revoked", x_user_id="99"),
                     poll_seconds=0.02)
    good = XConnector(load_settings(x_api_base=good_fake.base, x_bearer_token="ok", x_user_id="99"), poll_seconds=0.02)
    good.name = "x-second-brand"
    store, stop, got = MemoryCursorStore(), asyncio.Event(), []

    async def publish(batch):
        got.extend(batch)

    tasks = [asyncio.create_task(run_connector(c, publish, store, stop, backoff_base=0.01)) for c in (bad, good)]
    bad_status = await asyncio.wait_for(tasks[0], 10)
    assert bad_status.state == "stopped" and bad_status.stopped_by_error and "401" in bad_status.last_error
    assert "connector x stopped" in caplog.text and "revoked" not in caplog.text  # no secret in the log
    good_fake.tweets.append(tweet(7))
    for _ in range(200):
        if len(got) == 4:
            break
        await asyncio.sleep(0.02)
    assert good.status.state == "running" and good.status.mentions_seen == 4 and good.status.last_poll_at
    stop.set()
    assert (await asyncio.wait_for(tasks[1], 10)).state == "stopped"
    assert list(store.values) == ["x-second-brand"] and since_id(store.values["x-second-brand"]) == tweet(7)["id"]
