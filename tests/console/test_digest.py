"""The sentiment digest: its numbers, charts readable without JavaScript, CSV, CLI, mail, schedule."""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from console.charts import all_charts
from console.digest import compute, to_csv
from console.digest_mail import build_email, render_html
from console.digest_schedule import due_key, run_due
from models import Incident
from models.console import DigestSchedule
from tests.console.conftest import add_mention, login
from tests.console.smtp_sink import SmtpSink

END = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"


async def seed(runtime):
    """Previous day: 4 quiet mentions. Digest day: 12, with a burst of "battery drain" complaints."""
    prev = END - timedelta(days=1, hours=12)
    for i in range(4):
        await add_mention(runtime, f"app works fine {i}", platform="x", sentiment="neutral", issue_type="other",
                          outcome="ignore", created_at=prev + timedelta(minutes=i))
    day = END - timedelta(hours=10)
    for i in range(6):
        await add_mention(runtime, f"battery drain after the update, phone dies by noon ({i})", platform="x",
                          sentiment="negative", issue_type="bug_report", created_at=day + timedelta(minutes=i))
    for i in range(3):
        await add_mention(runtime, "love the new design, great job", platform="reddit", sentiment="positive",
                          issue_type="praise", outcome="ignore", created_at=day - timedelta(hours=5, minutes=i))
    await add_mention(runtime, "mail me at jane.doe@example.com or call +1 415 555 0199 @janedoe",
                      platform="reddit", sentiment="negative", issue_type="billing", priority=99,
                      created_at=day - timedelta(hours=2))
    await add_mention(runtime, "BUY CHEAP FOLLOWERS", outcome="moderate", sentiment="positive",
                      created_at=day - timedelta(hours=1))
    async with runtime.db.session() as s:
        s.add(Incident(dedup_key="bug_report:x:1", issue_type="bug_report", channel="x", title="Battery drain reports",
                       opened_at=day + timedelta(minutes=3)))
        await s.commit()


async def test_the_digest_counts_compares_and_finds_what_is_new(runtime):
    await seed(runtime)
    async with runtime.db.session() as s:
        d = await compute(s, "day", END)
    assert (d.total, d.prev_total) == (10, 4)  # spam held by moderation is not opinion
    assert d.volume == {"x": (6, 4), "reddit": (4, 0)}
    assert d.sentiment == {"negative": (7, 0), "neutral": (0, 4), "positive": (3, 0)}
    assert sum(sum(b.values()) for _, b in d.series) == d.total and len(d.series) == 24
    assert d.issues[0][:2] == ("bug_report", 6) and d.issues[0][2] == 0.6
    emerging = [t for t, _, _ in d.emerging]
    assert "battery drain" in emerging and "battery" in emerging and not any("fine" in t for t in emerging)
    assert [i["title"] for i in d.incidents] == ["Battery drain reports"]
    assert d.spikes == []  # 6 posts in an hour against a typical busy hour of 3.5 is no spike
    assert len(d.positive) == 3 and all("love the new design" in p.text for p in d.positive)
    notable = " ".join(p.text for p in d.negative)
    assert "jane.doe@example.com" not in notable and "555 0199" not in notable and "@janedoe" not in notable
    assert d.net_sentiment == -0.4 and d.prev_net_sentiment == 0.0


async def test_the_csv_holds_the_same_numbers(runtime):
    await seed(runtime)
    async with runtime.db.session() as s:
        d = await compute(s, "day", END)
    rows = list(csv.DictReader(io.StringIO(to_csv(d))))
    volume = {r["key"]: (int(r["current"]), int(r["previous"])) for r in rows if r["section"] == "volume"}
    assert volume == {"total": (10, 4), "x": (6, 4), "reddit": (4, 0)}
    over_time = sum(int(r["current"]) for r in rows if r["section"] == "sentiment_over_time")
    assert over_time == 10
    assert {r["key"] for r in rows if r["section"] == "emerging_term"} >= {"battery drain"}


async def test_charts_are_png_images_embedded_in_the_html_and_the_email(runtime):
    import matplotlib.image as mpimg

    await seed(runtime)
    async with runtime.db.session() as s:
        d = await compute(s, "day", END)
    charts = all_charts(d)
    assert [c.name for c in charts] == ["sentiment", "volume", "issues"]
    for c in charts:
        img = mpimg.imread(io.BytesIO(c.png), format="png")
        assert c.png.startswith(PNG) and img.shape[0] > 150 and img.shape[1] > 400
    html = render_html(d, charts)
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 3 and all(base64.b64decode(u).startswith(PNG) for u in uris)
    assert "<script" not in html
    msg = build_email(d, charts, sender="care@example.com", recipients=["m@example.com"])
    html_part = msg.get_body(("html",))
    cids = re.findall(r'src="cid:([^"]+)"', html_part.get_content())
    related = {p["Content-ID"].strip("<>"): p for p in msg.walk() if p.get("Content-ID")}
    assert len(cids) == 3 and set(cids) == set(related)
    assert all(related[c].get_content().startswith(PNG) for c in cids)
    assert [p.get_filename() for p in msg.iter_attachments()][-1].endswith(".csv")


async def test_the_console_page_shows_charts_and_exports_csv_for_marketing_only(app_client, runtime):
    await add_mention(runtime, "love it", sentiment="positive", outcome="ignore")
    await login(app_client, "alice")
    assert (await app_client.get("/digest", allow_redirects=False)).status == 403
    await login(app_client, "mia")
    page = await app_client.get("/digest?period=week")
    html = await page.text()
    assert page.status == 200 and len(re.findall(r'<img src="data:image/png;base64,', html)) == 3
    r = await app_client.get("/digest.csv?period=day")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert "volume,total,,1,0" in await r.text()


def test_the_cli_writes_the_html_file_and_the_csv(tmp_path, sqlite_url, monkeypatch):
    from service.cli import main

    monkeypatch.setenv("SOCIALCARE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SOCIALCARE_VAR_DIR", str(tmp_path / "var"))
    out, numbers = tmp_path / "digest.html", tmp_path / "digest.csv"
    result = CliRunner().invoke(main, ["digest", "--period", "week", "--out", str(out), "--csv", str(numbers)])
    assert result.exit_code == 0, result.output
    assert "digest (week): 0 mentions" in result.output
    assert out.read_text().count("data:image/png;base64,") == 3 and numbers.read_text().startswith("section,")
    bad = CliRunner().invoke(main, ["digest", "--period", "week"])
    assert bad.exit_code != 0 and "--out" in bad.output


@pytest.mark.parametrize("now,send_at,period,weekday,expected", [
    ("2026-11-24T07:05", "07:00", "day", 0, "day:2026-11-24"),
    ("2026-11-24T06:55", "07:00", "day", 0, None),  # yesterday's slot is 24 h old: skipped, not sent late
    ("2026-11-24T13:30", "07:00", "day", 0, None),  # too late to be useful
    ("2026-11-23T08:00", "07:00", "week", 0, "week:2026-11-23"),  # Monday
    ("2026-11-24T08:00", "07:00", "week", 0, None),
])
def test_when_a_scheduled_digest_is_due(now, send_at, period, weekday, expected):
    s = DigestSchedule(period=period, send_at=send_at, weekday=weekday, recipients=["a@example.com"])
    key = due_key(s, datetime.fromisoformat(now).replace(tzinfo=UTC))
    assert key == expected


async def test_a_scheduled_digest_is_mailed_once_per_period_over_smtp(runtime, console_settings):
    sink = SmtpSink()
    await sink.start()
    try:
        settings = console_settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port})
        now = datetime(2026, 11, 24, 7, 1, tzinfo=UTC)
        async with runtime.db.session() as s:
            s.add(DigestSchedule(period="day", send_at="07:00", recipients=["lead@example.com", "cmo@example.com"],
                                 updated_at=now - timedelta(days=1)))
            await s.commit()
        assert await run_due(runtime.db, settings, now) == ["day:2026-11-24"]
        assert await run_due(runtime.db, settings, now + timedelta(minutes=1)) == []
        assert len(sink.messages) == 1
        msg = sink.messages[0]
        assert msg["To"] == "lead@example.com, cmo@example.com" and "Sentiment digest (daily)" in msg["Subject"]
        assert len([p for p in msg.walk() if p.get_content_type() == "image/png"]) == 3
    finally:
        await sink.stop()


async def test_a_failed_send_is_shown_as_failed_and_tried_again_on_the_next_pass(runtime, console_settings):
    """A failure gives the period's claim back (it must not read as sent) and records why; the next
    pass tries again and, once it goes through, the error is gone and the period counts as sent."""
    from sqlalchemy import select

    sink = SmtpSink()
    await sink.start()
    try:
        down = console_settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": 1})
        now = datetime(2026, 11, 24, 7, 1, tzinfo=UTC)
        async with runtime.db.session() as s:
            s.add(DigestSchedule(period="day", send_at="07:00", recipients=["lead@example.com"],
                                 updated_at=now - timedelta(days=1)))
            await s.commit()
        assert await run_due(runtime.db, down, now) == []
        async with runtime.db.session() as s:
            sched = await s.scalar(select(DigestSchedule))
        assert sched.last_sent_key is None and "day:2026-11-24: ConnectionRefusedError" in sched.last_error
        assert sched.updated_at.replace(tzinfo=UTC) == now - timedelta(days=1)  # still the time it was saved
        up = console_settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port})
        assert await run_due(runtime.db, up, now + timedelta(minutes=1)) == ["day:2026-11-24"]
        assert await run_due(runtime.db, up, now + timedelta(minutes=2)) == []  # and only once
        async with runtime.db.session() as s:
            sched = await s.scalar(select(DigestSchedule))
        assert (sched.last_sent_key, sched.last_error) == ("day:2026-11-24", None) and len(sink.messages) == 1
    finally:
        await sink.stop()


def test_a_schedule_first_sends_at_its_next_occurrence_after_it_was_saved():
    saved = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # after today's 07:00
    s = DigestSchedule(period="day", send_at="07:00", weekday=0, recipients=["a@example.com"], updated_at=saved)
    assert due_key(s, saved + timedelta(minutes=1)) is None  # not at once
    assert due_key(s, datetime(2026, 11, 25, 7, 0, tzinfo=UTC)) == "day:2026-11-25"
    from console.digest_schedule import next_send

    assert next_send(s, saved) == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    early = DigestSchedule(period="day", send_at="10:00", weekday=0, recipients=["a@example.com"], updated_at=saved)
    assert next_send(early, saved) == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_spikes_need_a_baseline_of_busy_buckets_and_the_demo_outage_is_one():
    """The weekly digest of the demo (one day of data in 6-hour buckets, the rest empty) used to call an
    ordinary quarter of the day a spike "against typical 0"; the 14:00 outage hour stays one."""
    import json
    from collections import Counter
    from pathlib import Path

    from console.digest import find_spikes

    demo = Path(__file__).resolve().parents[2] / "service/demo/mentions.jsonl"
    hours = Counter(int(json.loads(line)["created_at"][11:13]) for line in demo.read_text().splitlines())
    hourly = [hours[h] for h in range(24)]
    typical, spiking = find_spikes(hourly, [0] * 24)
    assert spiking == [14] and 10 < typical < 25
    week = [0] * 24 + [sum(hourly[i:i + 6]) for i in range(0, 24, 6)]  # 28 six-hour buckets, 4 with data
    assert find_spikes(week, [0] * 28)[1] == []
    assert find_spikes([0] * 27 + [45], [0] * 28) == (None, [])  # one busy bucket: no baseline at all
    assert find_spikes([2, 3, 2, 9, 3], [2, 3])[1] == []  # 9 is three times typical but too few to matter


async def test_with_an_empty_previous_period_no_term_is_called_emerging(app_client, runtime):
    for i in range(4):
        await add_mention(runtime, f"battery drain again {i}", created_at=END - timedelta(hours=3, minutes=i))
    async with runtime.db.session() as s:
        d = await compute(s, "day", END)
    assert d.prev_total == 0 and d.emerging == [] and not d.has_previous
    assert ("battery drain", 4) in d.top_terms
    await login(app_client, "mia")
    html = await (await app_client.get("/digest?period=day&end=2026-11-23")).text()
    assert "No previous period to compare with" in html and "Nothing new stands out" not in html


async def test_the_csv_carries_issue_counts_with_their_shares(runtime):
    await seed(runtime)
    async with runtime.db.session() as s:
        d = await compute(s, "day", END)
    rows = list(csv.DictReader(io.StringIO(to_csv(d))))
    counts = {r["key"]: (int(r["current"]), int(r["previous"])) for r in rows if r["section"] == "issue_count"}
    shares = {r["key"]: float(r["current"]) for r in rows if r["section"] == "issue_share"}
    assert counts["bug_report"] == (6, 0) and shares["bug_report"] == 0.6 and set(counts) == set(shares)


async def test_the_page_the_csv_and_the_api_take_an_end_day(app_client, runtime):
    from tests.console.conftest import bot_token

    await seed(runtime)  # the digest day is 2026-11-23 (it ends at midnight before END's day starts)
    await login(app_client, "mia")
    page = await (await app_client.get("/digest?period=day&end=2026-11-23")).text()
    assert "2026-11-23 00:00 – 2026-11-24 00:00 UTC" in page and 'value="2026-11-23"' in page
    csv_text = await (await app_client.get("/digest.csv?period=day&end=2026-11-23")).text()
    assert "volume,total,,10,4" in csv_text
    h = {"Authorization": f"Bearer {await bot_token(runtime, 'mia', ['digest:read'])}"}
    body = await (await app_client.get("/api/v1/digest?period=day&end=2026-11-23", headers=h)).json()
    assert (body["start"], body["total"], body["previous_total"]) == ("2026-11-23T00:00:00+00:00", 10, 4)
    for bad in ("2026-13-01", "yesterday", "2999-01-01"):
        r = await app_client.get(f"/api/v1/digest?period=day&end={bad}", headers=h)
        assert r.status == 400 and "end" in (await r.json())["error"]["message"]
    r = await app_client.get("/api/v1/digest?period=day&since=2026-11-01", headers=h)
    assert r.status == 400 and "since" in (await r.json())["error"]["message"]


async def test_an_empty_period_points_at_the_day_of_the_latest_post(app_client, runtime):
    """The demo's day lies in the past: a digest "up to now" would show blank charts and no hint
    where the posts are. A post routed to moderation is no latest post (the digest does not count it)."""
    await seed(runtime)  # its last counted post: 2026-11-23 14:05 UTC
    await add_mention(runtime, "WIN FREE FOLLOWERS NOW", outcome="moderate", created_at=END + timedelta(days=1, hours=12))
    await login(app_client, "mia")
    html = await (await app_client.get("/digest?period=week&end=2026-12-02")).text()  # from 2026-11-26
    assert 'id="earlier"' in html and "The latest is from 2026-11-23" in html
    assert 'href="/digest?period=week&amp;end=2026-11-23"' in html
    shown = await (await app_client.get("/digest?period=week&end=2026-11-23")).text()
    assert 'id="earlier"' not in shown  # that week holds them
    async with runtime.db.session() as s:
        from console.digest import latest_day_before
        assert await latest_day_before(s, END - timedelta(days=5)) is None  # nothing before the seed


def test_the_cli_names_the_latest_day_when_its_period_is_empty(tmp_path, sqlite_url, monkeypatch):
    import asyncio

    from models.db import Database
    from service.cli import main
    from service.settings import Settings

    monkeypatch.setenv("SOCIALCARE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SOCIALCARE_VAR_DIR", str(tmp_path / "var"))

    async def one_post() -> None:
        db = Database.from_settings(Settings(database_url=sqlite_url, var_dir=tmp_path / "var"))
        await db.upgrade()
        try:
            await add_mention(type("R", (), {"db": db})(), "the app crashes on start", created_at=END)
        finally:
            await db.close()

    asyncio.run(one_post())
    result = CliRunner().invoke(main, ["digest", "--period", "day", "--csv", str(tmp_path / "d.csv"),
                                       "--end", "2026-11-30T00:00"])
    assert result.exit_code == 0, result.output
    assert "the latest is from 2026-11-24: try --end 2026-11-25" in result.output
    found = CliRunner().invoke(main, ["digest", "--period", "day", "--csv", str(tmp_path / "d.csv"),
                                      "--end", "2026-11-25"])
    assert "digest (day): 1 mentions" in found.output and "the latest is" not in found.output


async def test_private_matters_are_counted_but_never_quoted_nor_their_words_listed(runtime):
    """The digest is mailed around the company: a private message or a takeover or fraud report counts
    in the numbers, and neither its text nor its words reach the notable posts or the terms."""
    from models import Mention

    at = END - timedelta(hours=3)
    await add_mention(runtime, "playback stutters on the living room speaker", created_at=at)
    dm = await add_mention(runtime, "husband drains joint account quietly", created_at=at + timedelta(minutes=1))
    for i in range(3):
        await add_mention(runtime, f"stranger emptied wallet overnight {i}", sensitivity="fraud",
                          created_at=at + timedelta(minutes=2 + i))
    await add_mention(runtime, "reset it but my playlists are gone", outcome="escalate_private",  # joins a case
                      created_at=at + timedelta(minutes=6))
    await add_mention(runtime, "see care.example.com/secure/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg "
                               "living room speaker broken", created_at=at + timedelta(minutes=9))
    async with runtime.db.session() as s:
        (await s.get(Mention, dm.id)).is_public = False
        await s.commit()
        d = await compute(s, "day", END)
    assert d.total == 7 and d.sentiment["negative"][0] == 7
    shown = " ".join(p.text for p in d.negative)
    assert "playback stutters" in shown and "living room speaker broken" in shown
    assert "husband" not in shown and "wallet" not in shown and "AbCdEfGh" not in shown and "playlists" not in shown
    words = {t for t, _ in d.top_terms}
    assert "living room" in words and not {"husband", "wallet", "stranger emptied", "playlists"} & words


def test_count_axes_are_whole_numbers_from_zero_also_when_empty():
    from console.charts import sentiment_figure, volume_figure
    from console.digest import Digest

    start = END - timedelta(days=1)
    empty = Digest(period="day", start=start, end=END, prev_start=start - timedelta(days=1),
                   series=[(start + timedelta(hours=h), {"negative": 0, "neutral": 0, "positive": 0}) for h in range(24)])
    small = Digest(period="day", start=start, end=END, prev_start=start - timedelta(days=1), volume={"x": (2, 1)},
                   series=[(start + timedelta(hours=h), {"negative": h % 3, "neutral": 0, "positive": 0})
                           for h in range(24)])
    for d in (empty, small):
        for fig, axis in ((sentiment_figure(d), "y"), (volume_figure(d), "x")):
            ax = fig.axes[0]
            low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
            ticks = [t for t in (ax.get_yticks() if axis == "y" else ax.get_xticks()) if low <= t <= high]
            assert low == 0 and high >= 1 and all(float(t).is_integer() for t in ticks), (axis, ticks)


async def test_the_schedule_form_validates_time_and_recipients(app_client, runtime):
    csrf = await login(app_client, "mia")
    bad = await app_client.post("/digest/schedule", data={"csrf_token": csrf, "period": "day", "send_at": "25:00",
                                                          "recipients": "not-an-address", "active": "1"})
    text = await bad.text()
    assert bad.status == 400 and "HH:MM" in text
    ok = await app_client.post("/digest/schedule", allow_redirects=False, data={
        "csrf_token": csrf, "period": "day", "send_at": "06:30", "recipients": "a@example.com, b@example.org",
        "active": "1"})
    assert ok.status == 302
    async with runtime.db.session() as s:
        from sqlalchemy import select

        sched = await s.scalar(select(DigestSchedule).where(DigestSchedule.period == "day"))
    assert (sched.send_at, sched.recipients, sched.active) == ("06:30", ["a@example.com", "b@example.org"], True)


async def test_a_refused_schedule_names_the_bad_address_and_keeps_what_was_typed(app_client, runtime):
    csrf = await login(app_client, "mia")
    typed = "lead@example.com, cmo@example, ops@example.org"
    r = await app_client.post("/digest/schedule", data={"csrf_token": csrf, "period": "week", "send_at": "08:15",
                                                        "weekday": "4", "recipients": typed, "active": "1"})
    html = await r.text()
    assert r.status == 400 and "not a valid e-mail address: cmo@example" in html
    assert html.index('role="alert"') < html.index('class="digest"')  # said at the top, not only at the bottom
    assert f'value="{typed}"' in html and 'value="08:15"' in html and '<option value="4" selected>' in html
    assert 'name="active" value="1" checked' in html
    async with runtime.db.session() as s:
        from sqlalchemy import select

        assert await s.scalar(select(DigestSchedule)) is None


async def test_saving_confirms_when_the_first_digest_goes_out(app_client, runtime):
    csrf = await login(app_client, "mia")
    r = await app_client.post("/digest/schedule", data={"csrf_token": csrf, "period": "day", "send_at": "07:00",
                                                        "recipients": "a@example.com", "active": "1"})
    html = await r.text()
    assert r.status == 200 and "Schedule saved. The first digest goes out" in html
    assert "at 07:00 UTC" in html


async def test_send_now_mails_the_digest_shown_to_the_schedules_recipients(app_client, runtime, console_settings):
    from models import AuditEvent

    sink = SmtpSink()
    await sink.start()
    try:
        runtime.settings = runtime.settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port})
        await seed(runtime)
        csrf = await login(app_client, "mia")
        r = await app_client.post("/digest/send", data={"csrf_token": csrf, "period": "day", "end": "2026-11-23"})
        assert r.status == 400 and "save a schedule with recipients first" in await r.text()
        async with runtime.db.session() as s:
            s.add(DigestSchedule(period="day", send_at="07:00", recipients=["lead@example.com"], active=False))
            await s.commit()
        r = await app_client.post("/digest/send", data={"csrf_token": csrf, "period": "day", "end": "2026-11-23"})
        assert r.status == 200 and "Digest sent." in await r.text()
        [msg] = sink.messages
        assert msg["To"] == "lead@example.com" and msg["Subject"].endswith("— 2026-11-23")  # the day it covers
        async with runtime.db.session() as s:
            from sqlalchemy import select

            [event] = (await s.scalars(select(AuditEvent).where(AuditEvent.action == "digest.sent_now"))).all()
        assert event.actor == "session:mia" and event.details == {"recipients": 1}
    finally:
        await sink.stop()


async def test_a_failed_send_reads_as_failed_on_the_page(app_client, runtime):
    now = datetime.now(UTC)
    async with runtime.db.session() as s:
        s.add(DigestSchedule(period="day", send_at=f"{now:%H}:00", recipients=["lead@example.com"],
                             updated_at=now - timedelta(days=2),
                             last_error="day:x: ConnectionRefusedError: [Errno 111] Connection refused"))
        await s.commit()
    await login(app_client, "mia")
    html = await (await app_client.get("/digest?period=day")).text()
    state = html[html.index('id="schedule-state"'):]
    assert "Last attempt failed: day:x: ConnectionRefusedError" in state and "will retry" in state
    assert "Last sent" not in state


def test_the_issue_chart_says_when_it_shows_only_the_largest_types():
    from console.charts import issue_shares
    from console.digest import Digest

    start = END - timedelta(days=1)
    many = [(f"type{i}", 12 - i, (12 - i) / 78, 0.0) for i in range(12)]
    for issues, said in ((many, "the 8 largest of 12"), (many[:3], None)):
        chart = issue_shares(Digest(period="day", start=start, end=END, prev_start=start - timedelta(days=1),
                                    issues=issues))
        assert (said in chart.title) if said else ("largest" not in chart.title)
