"""A secure link quoted URL-encoded (or JSON- or HTML-escaped) never surfaces where people and
programs read what was written: the outbox (a bot's read token on /api/v1/mentions) and the dead
letters shown to an admin's token (/api/v1/deadletters: rows and payloads), through the console over
a real database and the web process's own bus. (The CLI's listing:
tests/service/bus/test_deadletter_cli.py; the privacy export: tests/service/test_privacy_export_links.py.)"""

from __future__ import annotations

from sqlalchemy import select

from console.auth import create_api_token, create_user
from models import Reply, User
from tests.console.conftest import add_mention, bot_token

TOKEN = "GzycuqYjFZPD7Al3RrbQtYQ83YLjDlKSOJZ10j7xWYU"
ENCODED = f"https%3A%2F%2Fcare.example.com%2Fsecure%2F{TOKEN}"  # a share button's, or a tracker's
TWICE = f"https%253A%252F%252Fcare.example.com%252Fsecure%252F{TOKEN}"  # a redirect's parameter, encoded again
LOWER = f"care.example.com%2fsecure%2f{TOKEN}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_outbox_never_shows_a_link_quoted_url_encoded(world):
    m = await add_mention(world.rt, "someone hacked my account", sensitivity="security")
    async with world.rt.db.session() as s:
        s.add(Reply(dedup_key=f"quote:{m.id}", mention_id=m.id, platform="x", visibility="private", kind="reply",
                    text=f"Is this your link? https://t.example/r?u={TWICE} (or {LOWER})", status="pending",
                    sent_by="alice"))
        await s.commit()
    token = await bot_token(world.rt, "alice", ["mentions:read"])
    body = await (await world.client.get(f"/api/v1/mentions/{m.id}", headers=bearer(token))).json()
    [reply] = body["replies"]
    assert reply["text"] == "Is this your link? [secure link] (or [secure link])"
    assert TOKEN not in str(body)


async def admin_token(rt) -> str:
    async with rt.db.session() as s:
        await create_user(s, "root", "correct horse battery", "admin")
        user = await s.scalar(select(User).where(User.username == "root"))
        token = await create_api_token(s, user, "runbook", ["deadletters"])
        await s.commit()
    return token


async def test_dead_letters_shown_to_an_admins_token_never_show_a_link_quoted_url_encoded(world):
    bus = world.rt.bus
    text = f"this link fails {ENCODED} mail jo.doe@example.com"
    payload = {"mention": {"text": text, "raw": {"text": text, "urls": [f"https://t.example/r?u={TWICE}"]}}}
    await bus.ensure_group("ingest", "ingest")
    await bus.publish("ingest", payload, "x:1")
    while not await bus.fail("ingest", "ingest", (await bus.read("ingest", "ingest", "w", 1, 0))[0],
                             f"ValueError: cannot parse {LOWER}"):
        pass
    h = bearer(await admin_token(world.rt))
    listed = await (await world.client.get("/api/v1/deadletters", headers=h)).json()
    [row] = listed["deadletters"]
    assert row["reason"] == "ValueError: cannot parse [secure link]"
    shown = await (await world.client.get(f"/api/v1/deadletters/{row['id']}", headers=h)).json()
    assert shown["payload"]["mention"] == {"text": "this link fails [secure link] mail [email]",
                                           "raw": {"text": "this link fails [secure link] mail [email]",
                                                   "urls": ["[secure link]"]}}
    assert TOKEN not in str(listed) + str(shown)


async def test_dead_letters_never_show_a_link_quoted_json_or_html_escaped(world):
    """A payload may hold a JSON text (a webhook body, a platform's raw event stored as a string) whose
    serializer escaped "/", or HTML-escaped text; the token in it opens the channel just the same."""
    bus = world.rt.bus
    body = f'{{"text":"help","url":"https:\\/\\/care.example.com\\/secure\\/{TOKEN}"}}'
    page = f"&lt;a href=&quot;https:&#x2F;&#x2F;care.example.com&#x2F;secure&#x2F;{TOKEN}&quot;&gt;"
    await bus.ensure_group("ingest", "ingest")
    await bus.publish("ingest", {"mention": {"text": "hi", "raw": {"body": body, "html": page}}}, "x:2")
    reason = f"ValueError: cannot parse http:\\u002f\\u002fcare.example.com\\u002fsecure\\u002f{TOKEN}"
    while not await bus.fail("ingest", "ingest", (await bus.read("ingest", "ingest", "w", 1, 0))[0], reason):
        pass
    h = bearer(await admin_token(world.rt))
    listed = await (await world.client.get("/api/v1/deadletters", headers=h)).json()
    [row] = listed["deadletters"]
    assert row["reason"] == "ValueError: cannot parse [secure link]"
    shown = await (await world.client.get(f"/api/v1/deadletters/{row['id']}", headers=h)).json()
    assert shown["payload"]["mention"]["raw"] == {"body": '{"text":"help","url":"[secure link]"}',
                                                  "html": "&lt;a href=&quot;[secure link]&quot;&gt;"}
    assert TOKEN not in str(listed) + str(shown)
