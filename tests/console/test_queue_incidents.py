"""The queue names each open incident that is collecting reports (type, channel, how many, when it
opened, whether a status went out), linking to it, and keeps the banners current: on SQLite and on
PostgreSQL, on a live clock and on a replayed day's."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from console.events import EVENTS
from models import Incident, IncidentMention, IncidentUpdate
from service.settings import load_settings
from tests.console.conftest import add_mention, login


@pytest.fixture
def console_settings(tmp_path, any_database_url):
    return load_settings(database_url=any_database_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                         dry_run=True, bus_block_ms=50, cookie_secure=False)


def banners(html: str) -> dict[int, str]:
    return {int(i): text for i, text in re.findall(
        r'<p class="notice incident-banner" data-incident-id="(\d+)">(.*?)</p>', html, re.DOTALL)}


async def incident(runtime, reports: list, *, opened_at: datetime, status: str = "open", key: str = "a",
                   told: str | None = None) -> int:
    async with runtime.db.session() as s:
        i = Incident(dedup_key=f"outage:x:{key}", issue_type="outage", channel="x", status=status,
                     title="Spike of outage reports on x", opened_at=opened_at, status_message=told)
        s.add(i)
        await s.flush()
        s.add_all([IncidentMention(incident_id=i.id, mention_id=m.id) for m in reports])
        if told:
            s.add(IncidentUpdate(incident_id=i.id, kind="status", message=told, actor="session:alice"))
        await s.commit()
        return i.id


async def test_the_queue_names_each_incident_collecting_reports_and_not_the_quiet_or_closed(app_client, runtime):
    now = datetime.now(UTC)
    fresh = [await add_mention(runtime, f"app down for me too {n}", issue_type="outage", outcome="auto_answer",
                               created_at=now - timedelta(minutes=30 - n)) for n in range(3)]
    old = await add_mention(runtime, "app down", issue_type="outage", outcome="auto_answer",
                            created_at=now - timedelta(hours=3))
    live = await incident(runtime, fresh, opened_at=now - timedelta(minutes=31))
    quiet = await incident(runtime, [old], opened_at=now - timedelta(hours=3, minutes=5), key="b")
    closed = await incident(runtime, fresh[:1], opened_at=now - timedelta(minutes=40), key="c", status="closed")
    await login(app_client, "alice")
    shown = banners(await (await app_client.get("/queue")).text())
    assert list(shown) == [live], (quiet, closed)
    assert f'<a href="/incidents/{live}">#{live} outage on x</a>' in shown[live]
    assert "3 reports" in shown[live] and "no status sent yet" in shown[live]
    assert "opened <time" in shown[live]
    # the live page swaps in the same banners
    r = await app_client.get("/queue/incidents")
    assert r.status == 200 and list(banners(await r.text())) == [live]


async def test_the_banner_says_when_a_status_went_out_and_live_pages_are_told(app_client, runtime):
    now = datetime.now(UTC)
    reports = [await add_mention(runtime, f"is the app down {n}", issue_type="outage", outcome="auto_answer",
                                 created_at=now - timedelta(minutes=10 - n)) for n in range(2)]
    iid = await incident(runtime, reports, opened_at=now - timedelta(minutes=11))
    csrf = await login(app_client, "alice")
    async with app_client.server.app[EVENTS].subscribe() as events:
        r = await app_client.post(f"/incidents/{iid}/status", data={"csrf_token": csrf, "message": "We are on it."},
                                  allow_redirects=False)
        assert r.status == 303, await r.text()
        event = await asyncio.wait_for(events.get(), 5)
    assert event["kind"] == "incident" and event["ids"] == [iid]
    shown = banners(await (await app_client.get("/queue/incidents")).text())[iid]
    assert "status sent <time" in shown and "We are on it." in shown and "no status sent" not in shown


async def test_on_a_replayed_day_the_clock_is_the_newest_post_not_the_wall(app_client, runtime):
    """The demo streams a day 17 days old: its spike is collecting while its posts come in."""
    day = datetime.now(UTC) - timedelta(days=17)
    reports = [await add_mention(runtime, f"down again {n}", issue_type="outage", outcome="auto_answer",
                                 created_at=day + timedelta(minutes=n)) for n in range(3)]
    iid = await incident(runtime, reports, opened_at=day)
    await add_mention(runtime, "unrelated question", created_at=day + timedelta(minutes=50))
    await login(app_client, "alice")
    assert list(banners(await (await app_client.get("/queue")).text())) == [iid]
    await add_mention(runtime, "later that evening", created_at=day + timedelta(hours=3))
    assert banners(await (await app_client.get("/queue")).text()) == {}  # gone quiet on the day's clock
