"""X's batch compliance job: tweets older than the re-check window are sent to X's batch compliance
endpoints once a day (real tweepy and aiohttp against the local fake X API, its pre-signed storage
URLs included), and each one X reports deleted or withdrawn loses its content here through the real
ingest path. The job is resumable: its state lives in a ``connector_cursors`` row."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from listener.cursors import CursorStore
from listener.protocol import NormalizedMention
from listener.x import compliance
from listener.x.compliance import NAME, ComplianceJob, results_to_mentions
from listener.x.normalize import tweet_to_mention
from models import Mention
from models.mentions import DELETED_TEXT
from service.settings import load_settings

from .fakes import serve
from .fakes.x_api import tweet
from .fakes.x_compliance import FakeXCompliance
from .ingest_path import Pipeline

JANE, TOM, ANN, BOB = "2244994945", "783214", "5551212", "6667777"
HOUR = 3600.0


@pytest.fixture
async def fake():
    x = FakeXCompliance(tweets=[tweet(0), tweet(1, author=TOM), tweet(2, author=ANN), tweet(3, author=BOB),
                                tweet(4), tweet(5)], page_size=100)
    server = await serve(x)
    yield x
    await server.close()


def settings_for(fake, **kw):
    return load_settings(**{"x_api_base": fake.base, "x_bearer_token": "test", "x_user_id": "99",
                            "x_recheck_hours": 24.0, **kw})


async def seed(db, tweets, hours_ago: float) -> Pipeline:
    """Ingest these tweets through the real ingest path, first seen ``hours_ago``."""
    pipe = Pipeline(db)
    await pipe.run([tweet_to_mention(t, {}, "x:99") for t in tweets])
    first_seen = datetime.now(UTC) - timedelta(hours=hours_ago)
    async with db.session() as s:
        await s.execute(update(Mention).where(Mention.external_id.in_([t["id"] for t in tweets]))
                        .values(ingested_at=first_seen))
        await s.commit()
    return pipe


def job_for(fake, db, pipe, made, **kw) -> ComplianceJob:
    job = ComplianceJob(settings_for(fake, **kw), db, pipe.run)
    made.append(job)
    return job


async def state(db) -> dict:
    return json.loads(await CursorStore(db).get(NAME))


async def step(job: ComplianceJob) -> dict:
    """One step, as soon as the state allows it (no test waits for real minutes)."""
    s, now = await job.load(), time.time()
    if s["next_at"] > now:  # the wait is over: time passes in the state, the fake's clock is the real one
        await job.save({**s, "next_at": now})
    await job.step(now)
    return await job.load()


async def run_job(job: ComplianceJob, limit: int = 10) -> dict:
    """Start the next job now (as if its day had come) and step until it was downloaded."""
    s = await job.load()
    downloading = s["phase"] == "download"
    for _ in range(limit):
        s = await step(job)
        if downloading and s["phase"] == "idle":
            return s
        downloading = s["phase"] == "download"
    raise AssertionError(f"the job did not finish: {s}")


async def texts(pipe: Pipeline) -> dict[str, tuple[str, bool]]:
    return {i: (m.text, m.deleted) for i, m in (await pipe.rows()).items()}


async def test_a_job_removes_the_content_of_tweets_x_reports_deleted_protected_or_suspended(fake, any_db, made):
    pipe = await seed(any_db, fake.tweets, hours_ago=72)
    ids = [t["id"] for t in fake.tweets]
    fake.gone.add(ids[0])
    fake.protected.add(TOM)
    fake.suspended.add(ANN)
    fake.deactivated.add(BOB)
    job = job_for(fake, any_db, pipe, made)
    finished = await run_job(job)
    rows = await texts(pipe)
    assert [rows[i] for i in ids[:4]] == [(DELETED_TEXT, True)] * 4
    assert rows[ids[4]] == ("@acme_help post 4", False) and rows[ids[5]] == ("@acme_help post 5", False)
    assert fake.uploads == [ids]  # by mention id
    assert set(fake.storage_auth) == {""}  # pre-signed URLs: no Authorization header goes there
    assert len(fake.jobs) == 1 and finished["job"] is None
    assert finished["next_at"] == pytest.approx(finished["started_at"] + 24 * HOUR)  # daily


async def test_only_tweets_older_than_the_recheck_window_and_still_shown_are_sent(fake, any_db, made):
    old, new = fake.tweets[:4], fake.tweets[4:]
    pipe = await seed(any_db, old, hours_ago=30)
    await seed(any_db, new, hours_ago=2)  # the re-check's
    gone_before = old[3]["id"]
    await pipe.run([NormalizedMention(platform="x", external_id=gone_before, text="", event="delete",
                                      created_at=datetime.now(UTC), remove_content=True)])
    reddit = NormalizedMention(platform="reddit", external_id="t3_abc", text="hello", created_at=datetime.now(UTC))
    await pipe.run([reddit])
    async with any_db.session() as s:
        await s.execute(update(Mention).where(Mention.platform == "reddit")
                        .values(ingested_at=datetime.now(UTC) - timedelta(hours=48)))
        await s.commit()
    job = job_for(fake, any_db, pipe, made)
    await run_job(job)
    assert fake.uploads == [[t["id"] for t in old[:3]]]


async def test_the_cap_takes_the_next_ids_each_job_and_wraps_around(fake, db, made):
    pipe = await seed(db, fake.tweets, hours_ago=48)
    ids = [t["id"] for t in fake.tweets]
    job = job_for(fake, db, pipe, made, x_compliance_max=4)
    for _ in range(3):
        await run_job(job)
    assert fake.uploads == [ids[:4], ids[4:] + ids[:2], ids[2:6]]


async def test_a_restart_midway_resumes_the_same_job_from_its_cursor(fake, db, made):
    pipe = await seed(db, fake.tweets, hours_ago=48)
    fake.gone.add(fake.tweets[1]["id"])
    first = job_for(fake, db, pipe, made)
    assert (await step(first))["phase"] == "upload"  # created, then the process stops
    await first.close()
    assert (await state(db))["job"]["id"] in fake.jobs
    again = job_for(fake, db, pipe, made)  # a new process reads the cursor
    assert (await step(again))["phase"] == "wait"
    third = job_for(fake, db, pipe, made)
    await run_job(third)
    assert len(fake.jobs) == 1 and len(fake.uploads) == 1
    assert (await texts(pipe))[fake.tweets[1]["id"]] == (DELETED_TEXT, True)


async def test_an_open_job_is_carried_on_instead_of_creating_a_second(fake, db, made):
    pipe = await seed(db, fake.tweets, hours_ago=48)
    fake.gone.add(fake.tweets[2]["id"])
    lost = job_for(fake, db, pipe, made)
    await step(lost)
    await step(lost)  # uploaded: the job is in progress on X ...
    await CursorStore(db).set(NAME, None)  # ... and its state is lost
    job = job_for(fake, db, pipe, made)
    s = await step(job)
    assert s["phase"] == "wait" and s["job"]["id"] in fake.jobs
    assert any(r.startswith("/2/compliance/jobs?") and "status=in_progress" in r for r in fake.requests)
    await run_job(job)
    assert len(fake.jobs) == 1
    assert (await texts(pipe))[fake.tweets[2]["id"]] == (DELETED_TEXT, True)


async def test_429_and_5xx_back_off_and_keep_the_job(fake, db, made):
    pipe = await seed(db, fake.tweets, hours_ago=48)
    fake.gone.add(fake.tweets[0]["id"])
    job = job_for(fake, db, pipe, made)
    await step(job)
    waiting = await step(job)
    assert waiting["phase"] == "wait"
    now = time.time()
    fake.compliance_fail_next.append((429, {"x-rate-limit-reset": str(int(now) + 120)}))
    await job.step(max(now, waiting["next_at"]))
    limited = await job.load()
    assert limited["phase"] == "wait" and limited["job"] == waiting["job"]
    assert limited["next_at"] >= int(now) + 120  # not before X's reset
    fake.compliance_fail_next.append((503, {}))
    failing = await step(job)
    assert failing["phase"] == "wait" and failing["job"] == waiting["job"] and failing["failures"] == 1
    assert (await step(job))["phase"] == "download"
    fake.storage_fail_next.append(503)  # the storage too
    assert (await step(job))["phase"] == "download"
    await run_job(job)
    assert len(fake.jobs) == 1
    assert (await texts(pipe))[fake.tweets[0]["id"]] == (DELETED_TEXT, True)


async def test_a_refused_token_is_logged_and_retried_next_run(fake, db, made, caplog):
    pipe = await seed(db, fake.tweets, hours_ago=48)
    job = job_for(fake, db, pipe, made)
    fake.compliance_fail_next.append((403, {}, {"title": "Unsupported Authentication", "status": 403,
                                                "detail": "Authenticating with OAuth 1.0a User Context is forbidden "
                                                          "for this endpoint.", "type": "about:blank"}))
    now = time.time()
    with caplog.at_level(logging.ERROR, "socialcare.listener.x.compliance"):
        await job.step(now)
    s = await job.load()
    assert s["phase"] == "idle" and s["next_at"] == pytest.approx(now + 24 * HOUR)
    assert "Unsupported Authentication" in caplog.text or "403" in caplog.text


@pytest.mark.parametrize("end", ["failed", "expired"])
async def test_a_failed_or_expired_job_is_replaced_by_a_new_one_next_round(fake, db, made, end):
    pipe = await seed(db, fake.tweets, hours_ago=48)
    fake.gone.add(fake.tweets[0]["id"])
    job = job_for(fake, db, pipe, made)
    await step(job)
    first = (await step(job))["job"]["id"]
    fake.jobs[first]["status"] = end
    dropped = await step(job)
    assert dropped["phase"] == "idle" and dropped["job"] is None
    await run_job(job)
    assert len(fake.jobs) == 2 and fake.jobs[first]["status"] == end
    assert (await texts(pipe))[fake.tweets[0]["id"]] == (DELETED_TEXT, True)


async def test_a_job_dropped_after_its_upload_sends_the_same_tweets_again_then_goes_on(fake, db, made):
    """Its tweets were never checked: the next job starts from where that one did, not after it
    (a backlog larger than one job would otherwise leave a slice unchecked until the ids wrap)."""
    pipe = await seed(db, fake.tweets, hours_ago=48)
    job = job_for(fake, db, pipe, made, x_compliance_max=2)
    await step(job)
    first = (await step(job))["job"]["id"]  # two tweets uploaded
    fake.jobs[first]["status"] = "failed"
    await step(job)
    await run_job(job)
    await run_job(job)
    assert fake.uploads[1] == fake.uploads[0] and fake.uploads[2] != fake.uploads[0]


async def test_an_expired_upload_url_drops_the_job_for_a_new_one(fake, db, made):
    pipe = await seed(db, fake.tweets, hours_ago=48)
    job = job_for(fake, db, pipe, made)
    await step(job)
    fake.storage_fail_next.append(400)  # ExpiredToken
    assert (await step(job))["job"] is None
    await run_job(job)
    assert len(fake.jobs) == 2 and len(fake.uploads) == 1


async def test_a_geo_scrub_or_any_other_action_deletes_nothing(fake, db, made):
    pipe = await seed(db, fake.tweets, hours_ago=48)
    ids = [t["id"] for t in fake.tweets]
    fake.events = {ids[0]: ("scrub_geo", "scrub_geo"), ids[1]: ("delete", "scrub_geo"), ids[2]: ("undrop", "undrop")}
    await run_job(job_for(fake, db, pipe, made))
    assert not any(deleted for _, deleted in (await texts(pipe)).values())
    mentions, ignored, bad = results_to_mentions('{"id": "1", "action": "delete", "reason": "deleted"}\nnot json\n'
                                                 '{"id": "2", "action": "scrub_geo", "reason": "scrub_geo"}', 0.0)
    assert [(m.external_id, m.event, m.remove_content) for m in mentions] == [("1", "delete", True)]
    assert (ignored, bad) == (1, 1)


async def test_nothing_to_send_creates_no_job(fake, db, made):
    pipe = await seed(db, fake.tweets, hours_ago=2)
    s = await step(job_for(fake, db, pipe, made))
    assert fake.jobs == {} and s["phase"] == "idle" and s["next_at"] > time.time() + 23 * HOUR


def test_disabled_without_a_bearer_token_or_with_hours_0():
    user_keys = dict(x_api_key="k", x_api_secret="s", x_access_token="t", x_access_secret="a")
    assert compliance.enabled(load_settings(x_bearer_token="b", x_user_id="99"))
    assert not compliance.enabled(load_settings(**user_keys))  # the endpoints are app-only
    assert not compliance.enabled(load_settings(x_bearer_token="b", x_user_id="99", x_compliance_hours=0))
    assert not compliance.enabled(load_settings())


@pytest.mark.parametrize("listen", [True, False])
async def test_only_a_process_polling_the_connectors_runs_the_job(fake, sqlite_url, tmp_path, listen):
    from service.runtime import Runtime

    settings = load_settings(database_url=sqlite_url, var_dir=tmp_path / "var", demo=False, x_api_base=fake.base,
                             x_bearer_token="test", x_user_id="99")
    rt = await Runtime.open(settings, stages=[], listen=listen)
    try:
        await rt.start()
        assert any(t.get_name() == "x-compliance" for t in rt.tasks) is listen
    finally:
        await rt.close()
