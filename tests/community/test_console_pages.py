"""Console pages of the community: the moderation queue (moderators), incidents (agents), the
knowledge base; role checks, CSRF on every change, and actions reaching the platform."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from console.app import create_app
from console.auth import create_user
from models import Incident, IncidentMention, ModerationAction, Template
from service.runtime import Runtime
from tests.community.conftest import DEMO, RecordingConnector, World

USERS = {"alice": "agent", "mod": "moderator", "mia": "marketing"}
PASSWORD = "a long test password"


class NoTriage:
    model_version = "none"


@pytest.fixture
async def rt(tmp_path, sqlite_url):
    from community.knowledge import import_folder
    from tests.community.conftest import community_settings

    settings = community_settings(tmp_path, database_url=sqlite_url, bus="inprocess", bus_block_ms=50)
    runtime = await Runtime.open(settings, stages=[], with_connectors=False, triager=NoTriage())
    runtime.connectors = [RecordingConnector("reddit"), RecordingConnector("x")]
    async with runtime.db.session() as s:
        for name, role in USERS.items():
            await create_user(s, name, PASSWORD, role)
        await import_folder(s, DEMO / "kb", DEMO / "templates")
        await s.commit()
    yield runtime
    await runtime.close()


@pytest.fixture
async def client(rt):
    async with TestClient(TestServer(create_app(rt))) as c:
        yield c


@pytest.fixture
def world(rt):
    return World(rt.db, rt.settings, {c.platform: c for c in rt.connectors})


async def login(client, user: str, page: str) -> str:
    r = await client.post("/login", data={"username": user, "password": PASSWORD, "next": page}, allow_redirects=False)
    assert r.status == 302
    html = await (await client.get(page)).text()
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    return match.group(1) if match else ""


@pytest.mark.parametrize("path, allowed, denied", [
    ("/moderation", "mod", "alice"),
    ("/incidents", "alice", "mod"),
    ("/knowledge", "mia", None),
])
async def test_pages_check_roles(client, path, allowed, denied):
    r = await client.get(path, allow_redirects=False)
    assert r.status in (302, 303) and "/login" in r.headers["Location"]
    await login(client, allowed, path)
    assert (await client.get(path)).status == 200
    if denied:
        await client.post("/logout", data={"csrf_token": await login(client, allowed, path)})
        await login(client, denied, "/knowledge")
        assert (await client.get(path, allow_redirects=False)).status == 403


async def held_post(world, text="buy followers cheap", author="seller"):
    """A post the spam rule held: hidden on Reddit at once. The connector's record is cleared
    after, so a test sees what the moderator's decision did."""
    m = await world.mention(text, platform="reddit", issue="other", spam=0.97, author=author)
    await world.run(m)
    assert world.connectors["reddit"].kinds() == ["remove"]
    world.connectors["reddit"].calls.clear()
    async with world.db.session() as s:
        return m, await s.scalar(select(ModerationAction).where(ModerationAction.mention_id == m.id,
                                                                ModerationAction.action == "hold"))


async def test_a_moderator_removes_a_held_post_with_a_reason_and_csrf_is_required(client, rt, world):
    m, hold = await held_post(world)
    csrf = await login(client, "mod", "/moderation")
    page = await (await client.get("/moderation")).text()
    assert "buy followers cheap" in page and "likely-spam" in page
    url = f"/moderation/{hold.id}/review"
    r = await client.post(url, data={"decision": "remove", "reason": "No selling."}, allow_redirects=False)
    assert r.status == 403 and rt.connectors[0].calls == []  # no CSRF token: refused, nothing done
    r = await client.post(url, data={"decision": "remove", "reason": "No selling.", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 303
    assert rt.connectors[0].kinds() == ["private_message"]  # hidden since it was held: the author is told why
    assert "No selling." in rt.connectors[0].calls[0].text
    async with rt.db.session() as s:
        assert (await s.get(ModerationAction, hold.id)).status == "reviewed"


def queue_rows(page: str) -> str:
    """The held posts' table rows (not the recent actions below them)."""
    return "".join(re.findall(r'<tr data-action-id="\d+".*?</tr>', page, re.DOTALL))


def status_line(page: str) -> str | None:
    match = re.search(r'<p class="notice" role="status"><bdi>(.*?)</bdi></p>', page, re.DOTALL)
    return html.unescape(match.group(1)) if match else None


def alert_line(page: str) -> str | None:
    match = re.search(r'<p class="error" role="alert"><bdi>(.*?)</bdi></p>', page, re.DOTALL)
    return html.unescape(match.group(1)) if match else None


async def test_an_agent_cannot_review_the_moderation_queue(client, rt, world):
    _, hold = await held_post(world)
    csrf = await login(client, "alice", "/incidents")
    r = await client.post(f"/moderation/{hold.id}/review", data={"decision": "approve", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 403 and rt.connectors[0].calls == []


async def test_an_agent_posts_a_status_and_closes_the_incident_from_its_timeline(client, rt, world):
    at = datetime(2026, 11, 20, 14, tzinfo=timezone.utc)
    ms = [await world.mention(f"acme down? #{i}", author=f"p{i}", issue="outage", at=at) for i in range(3)]
    async with rt.db.session() as s:
        inc = Incident(dedup_key="k", issue_type="outage", channel="x", title="Playback outage", opened_at=at)
        s.add(inc)
        await s.flush()
        s.add_all([IncidentMention(incident_id=inc.id, mention_id=m.id) for m in ms])
        await s.commit()
    csrf = await login(client, "alice", f"/incidents/{inc.id}")
    r = await client.post(f"/incidents/{inc.id}/status", data={"message": "Fix is rolling out."}, allow_redirects=False)
    assert r.status == 403
    r = await client.post(f"/incidents/{inc.id}/status", data={"message": "Fix is rolling out.", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 303
    x = rt.connectors[1]
    assert x.kinds() == ["public_reply"] * 3 and all("Fix is rolling out." in a.text for a in x.calls)
    r = await client.post(f"/incidents/{inc.id}/close", data={"send_fixed": "1", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 303 and x.kinds() == ["public_reply"] * 6
    page = await (await client.get(f"/incidents/{inc.id}")).text()
    assert "Fix is rolling out." in page and "fixed" in page and "closed" in page
    assert (await client.post(f"/incidents/{inc.id}/close", data={"csrf_token": csrf})).status == 400


async def test_the_incident_page_lists_whom_a_status_reaches_redacted_with_what_each_was_told(client, rt, world):
    """Before posting to everyone affected, an agent sees who that is: each author's latest report
    (an earlier one of the same author is not listed), personal data redacted, and after posting
    what each was told."""
    at = datetime(2026, 11, 20, 14, tzinfo=timezone.utc)
    first = await world.mention("acme down? nothing plays", author="p0", issue="outage", at=at)
    again = await world.mention("still down, mail me at jo@example.com", author="p0", issue="outage",
                                at=at.replace(minute=20))
    other = await world.mention("is acme down for everyone", author="p1", issue="outage", at=at.replace(minute=5))
    async with rt.db.session() as s:
        inc = Incident(dedup_key="k2", issue_type="outage", channel="x", title="Playback outage", opened_at=at)
        s.add(inc)
        await s.flush()
        s.add_all([IncidentMention(incident_id=inc.id, mention_id=m.id) for m in (first, again, other)])
        await s.commit()
    csrf = await login(client, "alice", f"/incidents/{inc.id}")
    page = await (await client.get(f"/incidents/{inc.id}")).text()
    rows = re.findall(r'<tr data-mention-id="(\d+)">', page)
    assert rows == [str(again.id), str(other.id)]  # newest first, one per author
    assert "jo@example.com" not in page and "still down, mail me at" in page
    assert f'href="/conversations/{again.conversation_id}"' in page and "2 author(s) affected" in page
    r = await client.post(f"/incidents/{inc.id}/status", data={"message": "We are on it.", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 303
    page = await (await client.get(f"/incidents/{inc.id}")).text()
    told = re.findall(r'<tr data-mention-id="\d+">.*?<td>(status: \w+)</td></tr>', page, re.DOTALL)
    assert told == ["status: sent", "status: sent"]
    assert "in dry run" not in page
    rt.settings = rt.settings.model_copy(update={"dry_run": True})
    assert "This channel is in dry run: replies are recorded, not sent." in await (
        await client.get(f"/incidents/{inc.id}")).text()


async def test_a_template_edit_is_checked_in_the_sandbox_before_it_is_saved(client, rt):
    csrf = await login(client, "alice", "/knowledge/templates/login_help")
    bad = {"csrf_token": csrf, "issue_types": "account_access", "tone:friendly": "{{ ''.__class__ }}"}
    r = await client.post("/knowledge/templates/login_help", data=bad, allow_redirects=False)
    assert r.status == 400
    good = {"csrf_token": csrf, "issue_types": "account_access", "tone:friendly": "Hi {{ author_name }}: {{ article_url }}",
            "new_tone": "casual", "new_body": "yo {{ author_name }}"}
    r = await client.post("/knowledge/templates/login_help", data=good, allow_redirects=False)
    assert r.status == 303
    async with rt.db.session() as s:
        tpl = await s.scalar(select(Template).where(Template.name == "login_help"))
    assert tpl.variants == {"friendly": "Hi {{ author_name }}: {{ article_url }}", "casual": "yo {{ author_name }}"}
    r = await client.post("/knowledge/templates/login_help", data={**good, "csrf_token": "0" * 64}, allow_redirects=False)
    assert r.status == 403


async def test_a_bulk_removal_reviews_every_selected_post_and_needs_a_reason(client, rt, world):
    holds = [(await held_post(world, f"buy followers cheap #{i}", f"seller{i}"))[1] for i in range(3)]
    csrf = await login(client, "mod", "/moderation")
    ids = [str(h.id) for h in holds[:2]]
    r = await client.post("/moderation/bulk", data=[("ids", i) for i in ids] + [("decision", "remove")],
                          allow_redirects=False)
    assert r.status == 403  # no CSRF token
    r = await client.post("/moderation/bulk", data=[("ids", i) for i in ids]
                          + [("decision", "remove"), ("csrf_token", csrf)], allow_redirects=False)
    assert r.status == 400 and rt.connectors[0].calls == []  # a removal without a reason: none done
    r = await client.post("/moderation/bulk", data=[("ids", i) for i in ids]
                          + [("decision", "remove"), ("reason", "No selling."), ("csrf_token", csrf)],
                          allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/moderation"
    assert rt.connectors[0].kinds() == ["private_message", "private_message"]
    page = await (await client.get("/moderation")).text()
    assert "2 reviewed (removed)." in page
    assert "buy followers cheap #2" in queue_rows(page) and "buy followers cheap #0" not in queue_rows(page)
    # the reviewed ones are refused a second time, named by what they say; the fresh one goes through
    r = await client.post("/moderation/bulk", data=[("ids", str(h.id)) for h in holds]
                          + [("decision", "approve"), ("csrf_token", csrf)], allow_redirects=False)
    assert r.status == 303
    notice = status_line(await (await client.get("/moderation")).text())
    assert notice == ("1 reviewed (approved); 2 refused: «buy followers cheap #0» (this item was already reviewed); "
                      "«buy followers cheap #1» (this item was already reviewed).")
    async with rt.db.session() as s:
        statuses = [(await s.get(ModerationAction, h.id)).status for h in holds]
    assert statuses == ["reviewed"] * 3


async def test_an_agent_cannot_use_the_bulk_review(client, rt, world):
    _, hold = await held_post(world)
    csrf = await login(client, "alice", "/incidents")
    r = await client.post("/moderation/bulk", data={"ids": str(hold.id), "decision": "approve", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 403 and rt.connectors[0].calls == []


async def test_a_notify_alert_shows_on_the_moderation_page_redacted_and_is_acknowledged_once(client, rt, world):
    from community import moderation

    m = await world.mention("we'll see you in court, call me at +1 415 555 0134", platform="reddit",
                            issue="other", author="angry")
    async with rt.db.session() as s:
        mention = await s.get(type(m), m.id)
        alert = await moderation.add_action(s, "t:notify", mention, "notify", "legal threat", rule="legal-threat",
                                            notify="care-leads")
        await s.commit()
    assert alert.status == "alert"
    csrf = await login(client, "mod", "/moderation")
    page = await (await client.get("/moderation")).text()
    assert "care-leads" in page and "legal-threat" in page and "see you in court" in page
    assert "555 0134" not in page  # the post as the page shows it: personal data redacted
    url = f"/moderation/alerts/{alert.id}/acknowledge"
    assert (await client.post(url, data={}, allow_redirects=False)).status == 403  # CSRF
    assert (await client.post(url, data={"csrf_token": csrf}, allow_redirects=False)).status == 303
    assert (await client.post(url, data={"csrf_token": csrf}, allow_redirects=False)).status == 400
    async with rt.db.session() as s:
        row = await s.get(ModerationAction, alert.id)
    assert row.status == "acknowledged" and row.details["acknowledged_by"] == "session:mod"
    page = await (await client.get("/moderation")).text()
    assert f'data-alert-id="{alert.id}"' not in page  # no longer open ...
    history = re.search(rf'<tr data-acknowledged-id="{alert.id}">(.*?)</tr>', page, re.DOTALL).group(1)
    assert "session:mod" in history and "legal-threat" in history and "see you in court" in history  # ... but kept
    assert "555 0134" not in page
