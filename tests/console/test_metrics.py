"""Service measures on a small, hand-counted day of work (see console.measures for definitions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from console.measures import percentile, summary
from models import Case, Reply
from tests.console.conftest import add_mention, bot_token, login


async def _reply(runtime, m, at, *, by="session:alice", kind="agent"):
    async with runtime.db.session() as s:
        s.add(Reply(dedup_key=f"t:{m.id}:{at.timestamp()}", mention_id=m.id, conversation_id=m.conversation_id,
                    platform=m.platform, kind=kind, text="ok", status="dry_run", sent_by=by, created_at=at))
        await s.commit()


async def seed(runtime):
    now = datetime.now(UTC)
    h = timedelta(hours=1)
    m1 = await add_mention(runtime, "how to export", outcome="auto_answer", handle="u1", created_at=now - 5 * h)
    await _reply(runtime, m1, now - 5 * h, by="bot", kind="auto_answer")
    m2 = await add_mention(runtime, "reset password?", outcome="auto_answer", handle="u2", created_at=now - 6 * h)
    await _reply(runtime, m2, now - 6 * h + timedelta(minutes=30))
    await add_mention(runtime, "older issue", handle="u3", created_at=now - 48 * h)  # m8: the earlier contact
    m3 = await add_mention(runtime, "refund please", handle="u3", created_at=now - 8 * h)
    await _reply(runtime, m3, now - 6 * h)
    await add_mention(runtime, "still waiting", handle="u4", created_at=now - 3 * h)  # unanswered, overdue
    await add_mention(runtime, "just asked", handle="u5", created_at=now - timedelta(minutes=10))  # inside target
    m6 = await add_mention(runtime, "fraud on my card", outcome="escalate_private", handle="u6", created_at=now - 4 * h)
    async with runtime.db.session() as s:
        s.add(Case(conversation_id=m6.conversation_id, author_id=m6.author_id, opened_by_mention_id=m6.id,
                   category="fraud", status="resolved", created_at=now - 4 * h,
                   first_response_at=now - 4 * h + timedelta(minutes=20), resolved_at=now - 2 * h))
        await s.commit()
    await add_mention(runtime, "buy followers", outcome="moderate", handle="u7", created_at=now - 2 * h)
    await add_mention(runtime, "and another thing", outcome="auto_answer", handle="u3", created_at=now - 1 * h)  # m9
    return now


async def test_the_measures_of_a_hand_counted_day(runtime):
    now = await seed(runtime)
    async with runtime.db.session() as s:
        m = await summary(s, now - timedelta(days=1), now, now=now)
    assert m.contacts == 7  # the spam held for moderation and the two-day-old contact are not counted
    assert (m.deflected, m.deflection_rate) == (2, round(2 / 7, 4))
    assert (m.escalated, m.cases_created, m.cases_solved) == (1, 1, 1)
    assert (m.threads_needing_agent, m.answered, m.answered_within_target) == (5, 3, 2)
    assert m.service_level == 0.5  # 2 in time of 3 answered + 1 overdue; the 10-minute-old one not yet due
    assert (m.first_response_median_s, m.first_response_p90_s) == (1800.0, 7200.0)
    assert m.first_contact_resolution == round(2 / 3, 4)  # u3 wrote again after the agent's answer
    assert m.repeat_contacts == 2  # u3's refund (after the older issue) and u3's "another thing"


def test_percentiles_use_the_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9
    assert percentile([3, 1, 2], 50) == 2


async def test_the_summary_endpoint_and_the_dashboard(app_client, runtime):
    await seed(runtime)
    token = await bot_token(runtime, "root", ["metrics"])
    r = await app_client.get("/api/v1/metrics/summary?period=day", headers={"Authorization": f"Bearer {token}"})
    body = await r.json()
    assert r.status == 200 and body["contacts"] == 7 and body["service_level"] == 0.5
    for bad in ("period=year", "start=yesterday", "start=2026-01-02&end=2026-01-01", "end=9999-01-01"):
        r = await app_client.get(f"/api/v1/metrics/summary?{bad}", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 400 and (await r.json())["error"]["status"] == 400
    await login(app_client, "alice")
    page = await (await app_client.get("/service-metrics?period=day")).text()
    assert "first-contact resolution" in page and "50%" in page and "30 min" in page


async def test_escalations_and_the_cases_they_open_count_on_the_same_day(runtime):
    """A backlog (or the demo's replay) creates yesterday's cases today: a case counts by the time of the
    post that opened it, like the escalation and every contact, so the two agree for each day."""
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1, hours=2)
    m = await add_mention(runtime, "someone used my card", outcome="escalate_private", handle="late",
                          created_at=yesterday)
    async with runtime.db.session() as s:
        s.add(Case(conversation_id=m.conversation_id, author_id=m.author_id, opened_by_mention_id=m.id,
                   category="fraud", created_at=now - timedelta(minutes=5)))  # the service got to it today
        s.add(Case(category="agent", created_at=now - timedelta(minutes=1)))  # opened without a post
        await s.commit()
    async with runtime.db.session() as s:
        day_before = await summary(s, now - timedelta(days=2), now - timedelta(days=1), now=now)
        today = await summary(s, now - timedelta(days=1), now, now=now)
    assert (day_before.escalated, day_before.cases_created) == (1, 1)
    assert (today.escalated, today.cases_created) == (0, 1)  # only the case without a post


async def test_an_empty_window_points_at_the_day_of_the_latest_contact(app_client, runtime):
    """The demo's day lies in the past: "last week" would read zeros with no hint where the contacts are.
    A post held for moderation is no contact, so it is not the latest one."""
    written = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    await add_mention(runtime, "the app is down", outcome="agent_queue", handle="d1", created_at=written)
    await add_mention(runtime, "buy followers", outcome="moderate", handle="d2", created_at=written + timedelta(days=2))
    await login(app_client, "alice")
    page = await (await app_client.get("/service-metrics?period=week&end=2026-12-06T00:00:00")).text()
    assert 'id="earlier"' in page and "The latest was written on 2026-11-20" in page
    link = "/service-metrics?period=week&amp;end=2026-11-21T00%3A00%3A00%2B00%3A00"
    assert link in page
    shown = await (await app_client.get(link.replace("&amp;", "&"))).text()
    assert 'id="earlier"' not in shown and "ending 2026-11-21T00:00" in shown
    assert '<div class="value">1</div><div class="label">contacts</div>' in shown
    assert "/api/v1/metrics/summary?period=week&amp;end=2026-11-21T00%3A00%3A00%2B00%3A00" in shown
