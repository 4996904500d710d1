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
    assert [n for _, n, _ in d.spikes] == [6]
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
        async with runtime.db.session() as s:
            s.add(DigestSchedule(period="day", send_at="07:00", recipients=["lead@example.com", "cmo@example.com"]))
            await s.commit()
        now = datetime(2026, 11, 24, 7, 1, tzinfo=UTC)
        assert await run_due(runtime.db, settings, now) == ["day:2026-11-24"]
        assert await run_due(runtime.db, settings, now + timedelta(minutes=1)) == []
        assert len(sink.messages) == 1
        msg = sink.messages[0]
        assert msg["To"] == "lead@example.com, cmo@example.com" and "Sentiment digest (daily)" in msg["Subject"]
        assert len([p for p in msg.walk() if p.get_content_type() == "image/png"]) == 3
    finally:
        await sink.stop()


async def test_a_failed_send_is_recorded_and_not_retried_into_duplicates(runtime, console_settings):
    settings = console_settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": 1})
    async with runtime.db.session() as s:
        s.add(DigestSchedule(period="day", send_at="07:00", recipients=["lead@example.com"]))
        await s.commit()
    now = datetime(2026, 11, 24, 7, 1, tzinfo=UTC)
    assert await run_due(runtime.db, settings, now) == []
    async with runtime.db.session() as s:
        from sqlalchemy import select

        sched = await s.scalar(select(DigestSchedule))
    assert sched.last_sent_key == "day:2026-11-24" and "ConnectionRefusedError" in sched.last_error


async def test_the_schedule_form_validates_time_and_recipients(app_client, runtime):
    csrf = await login(app_client, "mia")
    bad = await app_client.post("/digest/schedule", data={"csrf_token": csrf, "period": "day", "send_at": "25:00",
                                                          "recipients": "not-an-address", "active": "1"})
    assert bad.status == 400 and "HH:MM" in await bad.text()
    ok = await app_client.post("/digest/schedule", allow_redirects=False, data={
        "csrf_token": csrf, "period": "day", "send_at": "06:30", "recipients": "a@example.com, b@example.org",
        "active": "1"})
    assert ok.status == 302
    async with runtime.db.session() as s:
        from sqlalchemy import select

        sched = await s.scalar(select(DigestSchedule).where(DigestSchedule.period == "day"))
    assert (sched.send_at, sched.recipients, sched.active) == ("06:30", ["a@example.com", "b@example.org"], True)
