"""Private matters are the care team's: a private message, a report of a takeover or fraud (scored
security or fraud, or routed escalate_private) and the agents' private replies reach agents and
admins only. Marketing and moderators (people and their tokens) get them in no list, no count, and
a 404 by id; a moderator opens only a thread the moderation page links to (a post of it held,
reported, alerted or acted on), and there reads no private matter but what the page shows."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from console.queries import care_team_only
from models import Mention, ModerationAction, Reply, RouteDecision, TriageResult
from service.settings import load_settings
from tests.console.conftest import add_mention, bot_token, login

DM = "DM: my ex has my login and is draining the family account"
TAKEOVER = "someone changed my e-mail and bought 3 gift cards"
FOLLOW_UP = "any news? still waiting since yesterday"  # nothing sensitive in it: routed into her case
PUBLIC = "my parcel is late again"
PRIVATE_REPLY = "Hi Dana, I closed the second login and refunded the last invoice"
PUBLIC_REPLY = "Sorry about that, we are looking into it"


async def dm(runtime, text: str = DM, **kw) -> Mention:
    m = await add_mention(runtime, text, handle="dana", **kw)
    async with runtime.db.session() as s:
        await s.execute(update(Mention).where(Mention.id == m.id).values(is_public=False))
        await s.commit()
    return m


async def reply(runtime, m: Mention, text: str, visibility: str, key: str) -> None:
    async with runtime.db.session() as s:
        s.add(Reply(dedup_key=key, mention_id=m.id, conversation_id=m.conversation_id, platform=m.platform,
                    visibility=visibility, kind="agent", text=text, status="sent", sent_by="session:alice"))
        await s.commit()


async def world(runtime) -> dict[str, Mention]:
    """One of each private kind, each with a private agent reply, beside an ordinary public post."""
    posts = {
        "dm": await dm(runtime),
        "takeover": await add_mention(runtime, TAKEOVER, sensitivity="security", outcome="escalate_private",
                                      handle="erin"),
        "fraud": await add_mention(runtime, "charges I didn't make on my card", sensitivity="fraud",
                                   outcome="agent_queue", handle="fred"),
        "follow_up": await add_mention(runtime, FOLLOW_UP, outcome="escalate_private", handle="gina"),
        "public": await add_mention(runtime, PUBLIC, handle="hal"),
    }
    for name, m in posts.items():
        await reply(runtime, m, f"{PRIVATE_REPLY} ({name})", "private", f"t:priv:{name}")
    await reply(runtime, posts["public"], PUBLIC_REPLY, "public", "t:pub")
    return posts


@pytest.fixture
def console_settings(tmp_path, any_database_url):
    """The filters are SQL: every test here runs on SQLite and on PostgreSQL."""
    return load_settings(database_url=any_database_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                         dry_run=True, bus_block_ms=50, cookie_secure=False)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_post_routed_to_a_private_case_is_for_the_care_team_only_whatever_its_score():
    m = Mention(is_public=True, text=FOLLOW_UP)
    tri = TriageResult(sensitivity="none")
    assert not care_team_only(m, tri)
    assert care_team_only(m, tri, RouteDecision(outcome="escalate_private"))
    assert not care_team_only(m, tri, RouteDecision(outcome="agent_queue"))


async def test_api_lists_and_ids_withhold_private_matters_from_marketing_and_moderator_tokens(app_client, runtime):
    posts = await world(runtime)
    private = [posts[k].id for k in ("dm", "takeover", "fraud", "follow_up")]
    for user in ("mia", "mod"):
        h = bearer(await bot_token(runtime, user, ["mentions:read"]))
        listed = (await (await app_client.get("/api/v1/mentions", headers=h)).json())["mentions"]
        assert [m["id"] for m in listed] == [posts["public"].id], user
        polled = await (await app_client.get("/api/v1/mentions?since_id=0", headers=h)).json()
        assert [m["id"] for m in polled["mentions"]] == [posts["public"].id], user
        for mention_id in private:
            r = await app_client.get(f"/api/v1/mentions/{mention_id}", headers=h)
            assert r.status == 404 and (await r.json())["error"]["message"] == "no such mention", (user, mention_id)
        one = await (await app_client.get(f"/api/v1/mentions/{posts['public'].id}", headers=h)).json()
        assert [(x["visibility"], x["text"]) for x in one["replies"]] == [("public", PUBLIC_REPLY)], user
    h = bearer(await bot_token(runtime, "alice", ["mentions:read"]))  # the care team reads everything
    listed = (await (await app_client.get("/api/v1/mentions?limit=500", headers=h)).json())["mentions"]
    assert {m["id"] for m in listed} == {*private, posts["public"].id}
    one = await (await app_client.get(f"/api/v1/mentions/{posts['dm'].id}", headers=h)).json()
    assert one["text"] == DM and [x["visibility"] for x in one["replies"]] == ["private"]
    one = await (await app_client.get(f"/api/v1/mentions/{posts['public'].id}", headers=h)).json()
    assert sorted(x["visibility"] for x in one["replies"]) == ["private", "public"]


async def test_a_moderator_token_cannot_act_on_a_private_matter_but_on_what_the_moderation_page_shows(
        app_client, runtime):
    posts = await world(runtime)
    h = bearer(await bot_token(runtime, "mod", ["actions:write", "mentions:read"]))
    for name in ("dm", "takeover"):
        r = await app_client.post(f"/api/v1/mentions/{posts[name].id}/actions", json={"action": "lock"}, headers=h)
        assert r.status == 404, name
    async with runtime.db.session() as s:  # a rule's alert on the takeover post: the moderators have it
        s.add(ModerationAction(dedup_key="t:alert", mention_id=posts["takeover"].id, action="notify",
                               rule="threats", reason="threat", actor="bot", status="alert", details={}))
        await s.commit()
    r = await app_client.post(f"/api/v1/mentions/{posts['takeover'].id}/actions", json={"action": "lock"}, headers=h)
    assert r.status == 200
    r = await app_client.get(f"/api/v1/mentions/{posts['takeover'].id}", headers=h)
    assert r.status == 200 and [x["visibility"] for x in (await r.json())["replies"]] == []


async def test_the_mentions_page_neither_lists_nor_counts_private_matters_outside_the_care_team(
        app_client, runtime, second_browser):
    await world(runtime)
    await login(app_client, "mia")
    html = await (await app_client.get("/mentions")).text()
    assert PUBLIC in html and DM not in html and TAKEOVER not in html and FOLLOW_UP not in html
    assert "1 routed" in html and "escalate_private" not in re.sub(r"<select.*?</select>", "", html, flags=re.DOTALL)
    assert "care team" in html
    html = await (await app_client.get("/mentions?outcome=escalate_private")).text()
    assert TAKEOVER not in html and FOLLOW_UP not in html
    await login(second_browser, "alice")
    html = await (await second_browser.get("/mentions")).text()
    assert DM in html and TAKEOVER in html and FOLLOW_UP in html and "5 routed" in html
    assert "care team" not in html


async def test_a_moderator_opens_only_a_thread_the_moderation_page_links_to_and_reads_no_private_matter(
        app_client, runtime, second_browser):
    posts = await world(runtime)
    await login(app_client, "mod")
    for name in ("dm", "public"):  # nothing held, reported or alerted there
        r = await app_client.get(f"/conversations/{posts[name].conversation_id}")
        assert r.status == 404, name
    conv = posts["public"].conversation_id
    dm_here = await dm(runtime, "DM: and here is my new address, 12 Elm St", conversation_id=conv)
    await reply(runtime, dm_here, "Thanks, I updated your address privately", "private", "t:priv:here")
    async with runtime.db.session() as s:  # an agent reports the public post: a hold in the moderators' queue
        s.add(ModerationAction(dedup_key="t:report", mention_id=posts["public"].id, action="hold", rule="reported",
                               reason="abuse", actor="session:alice", status="pending", details={}))
        await s.commit()
    r = await app_client.get(f"/conversations/{conv}")
    html = await r.text()
    assert r.status == 200 and PUBLIC in html and PUBLIC_REPLY in html
    assert "12 Elm St" not in html and "updated your address" not in html and PRIVATE_REPLY not in html
    await login(second_browser, "alice")  # the agent's view of the same thread is whole
    html = await (await second_browser.get(f"/conversations/{conv}")).text()
    assert "12 Elm St" in html and "updated your address" in html and PRIVATE_REPLY in html


async def test_an_alert_on_a_takeover_report_opens_its_thread_to_the_moderator_without_the_private_replies(
        app_client, runtime):
    posts = await world(runtime)
    async with runtime.db.session() as s:
        s.add(ModerationAction(dedup_key="t:alert2", mention_id=posts["takeover"].id, action="notify",
                               rule="threats", reason="threat", actor="bot", status="alert", details={}))
        await s.commit()
    await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    assert f'href="/conversations/{posts["takeover"].conversation_id}"' in page
    r = await app_client.get(f"/conversations/{posts['takeover'].conversation_id}")
    html = await r.text()
    assert r.status == 200 and TAKEOVER in html and PRIVATE_REPLY not in html


def action(m: Mention, key: str, kind: str, status: str, rule: str | None = "builtin:pii") -> ModerationAction:
    return ModerationAction(dedup_key=key, mention_id=m.id, action=kind, rule=rule, reason="", actor="bot",
                            status=status, details={})


async def test_the_moderation_page_lists_no_action_on_a_private_matter_nor_a_bot_reply_to_one(
        app_client, runtime, second_browser):
    """A takeover or fraud report exposing personal data is hidden on its platform before it goes
    private: the hide is the care team's business, as the post is. The moderator's page lists it
    nowhere (recent actions, interrupted actions, bot replies), links no thread of it, and its forms
    answer 404; a private matter put before the moderators (here reported) stays theirs."""
    posts = await world(runtime)
    async with runtime.db.session() as s:
        hidden = action(posts["takeover"], "t:hide", "hide", "done")
        interrupted = action(posts["fraud"], "t:hide2", "hide", "unknown")
        public_hide = action(posts["public"], "t:hide3", "hide", "done", "likely-spam")
        reported = action(posts["follow_up"], "t:report", "hold", "pending", "reported")
        reported_hide = action(posts["follow_up"], "t:hide4", "hide", "done")
        notice = Reply(dedup_key="t:notice", mention_id=posts["takeover"].id,
                       conversation_id=posts["takeover"].conversation_id, platform="x", visibility="public",
                       kind="secure_link", text="We've sent you a DM", status="sent", sent_by="bot")
        s.add_all([hidden, interrupted, public_hide, reported, reported_hide, notice])
        await s.commit()
    csrf = await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    assert TAKEOVER not in page and "charges I didn't make" not in page and DM not in page
    for row in (hidden, interrupted):
        assert f'data-recent-id="{row.id}"' not in page and f'data-unknown-action-id="{row.id}"' not in page
    assert f'data-reply-id="{notice.id}"' not in page
    for name in ("takeover", "fraud", "dm"):
        assert f'href="/conversations/{posts[name].conversation_id}"' not in page, name
        assert posts[name].url not in page, name
        r = await app_client.get(f"/conversations/{posts[name].conversation_id}")
        assert r.status == 404, name  # no empty thread: no thread at all
    assert f'data-recent-id="{public_hide.id}"' in page and PUBLIC in page  # the rest as before
    assert f'data-recent-id="{reported_hide.id}"' in page and FOLLOW_UP in page  # put before the moderators
    r = await app_client.post(f"/moderation/actions/{interrupted.id}/settle",
                              data={"csrf_token": csrf, "outcome": "happened"})
    assert r.status == 404 and "charges" not in await r.text()
    r = await app_client.post(f"/moderation/replies/{notice.id}/delete", data={"csrf_token": csrf, "reason": "x"})
    assert r.status == 404
    token = await bot_token(runtime, "mod", ["actions:write"])  # nor through the API with a moderator's token
    r = await app_client.post(f"/api/v1/moderation-actions/{interrupted.id}/settle", json={"outcome": "happened"},
                              headers={"Authorization": f"Bearer {token}"})
    assert r.status == 404 and "charges" not in await r.text()
    async with runtime.db.session() as s:
        assert (await s.get(ModerationAction, interrupted.id)).status == "unknown"
        assert (await s.get(Reply, notice.id)).status == "sent"
    await login(second_browser, "root")  # an admin is of the care team: the whole page
    page = await (await second_browser.get("/moderation")).text()
    assert f'data-recent-id="{hidden.id}"' in page and f'data-unknown-action-id="{interrupted.id}"' in page
    assert f'data-reply-id="{notice.id}"' in page and TAKEOVER in page


async def test_the_moderation_page_links_a_bot_reply_to_its_thread_only_where_a_moderator_may_open_it(
        app_client, runtime):
    posts = await world(runtime)
    async with runtime.db.session() as s:
        s.add(Reply(dedup_key="t:bot", mention_id=posts["public"].id, conversation_id=posts["public"].conversation_id,
                    platform="x", visibility="public", kind="auto_answer", text="Try this", status="unknown",
                    sent_by="bot"))
        await s.commit()
    await login(app_client, "mod")
    page = await (await app_client.get("/moderation")).text()
    assert "An agent settles it from its conversation." in page
    assert f'href="/conversations/{posts["public"].conversation_id}"' not in page
    assert (await app_client.get(f"/conversations/{posts['public'].conversation_id}")).status == 404


async def test_the_openapi_description_says_private_matters_are_withheld(app_client):
    doc = await (await app_client.get("/api/openapi.json")).json()
    for path in ("/api/v1/mentions", "/api/v1/mentions/{id}"):
        assert "withheld" in doc["paths"][path]["get"]["description"], path
    assert "public ones only" in doc["components"]["schemas"]["Mention"]["properties"]["replies"]["description"]
