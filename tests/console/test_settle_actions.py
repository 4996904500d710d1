"""A moderation action left ``unknown`` (its executor interrupted mid platform call) is listed on the
moderation page and settled by a moderator, or through the API by a role that may act: it happened
(done; the API's own takes effect here) or is tried again (its interruption count reset on purpose,
performed once: by the pacer, or at once for the API's own); from ``unknown`` only, audited with ids
only. On SQLite and PostgreSQL, against fake platforms."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, update

from models import Author, Mention, ModerationAction, Reply
from service.dispatch import Dispatcher
from service.stranded import HELD
from tests.console import settle_support
from tests.console.conftest import add_mention, bot_token, login
from tests.console.settle_support import (
    SETTLED,
    answer_first,
    audited,
    bearer,
    get,
    platform,
    unknown_action,
)
from tests.console.test_api_spec import Described

rt, client = settle_support.rt, settle_support.client  # a console sending to fake platforms


async def test_a_moderator_tries_an_interrupted_hide_again_and_the_pacer_performs_it_once(client, rt):
    m = await add_mention(rt, "buy followers cheap", platform="reddit", handle="spammer")
    aid = await unknown_action(rt, m)
    csrf = await login(client, "mod")
    page = await (await client.get("/moderation")).text()
    assert "Interrupted: check these on their platform" in page and f'data-unknown-action-id="{aid}"' in page
    assert "May or may not have happened: check on Reddit" in page
    r = await client.post(f"/moderation/actions/{aid}/settle", data={"outcome": "not_happened"},
                          allow_redirects=False)
    assert r.status == 403  # no CSRF token
    r = await client.post(f"/moderation/actions/{aid}/settle", data={"outcome": "not_happened", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 303
    assert "performed again on Reddit within seconds" in await (await client.get("/moderation")).text()
    row = await get(rt, ModerationAction, aid)
    assert (row.status, row.details) == ("queued", {"interrupted": 0})  # its count reset, on purpose
    [event] = await audited(rt, "moderation.action_retried")
    assert (event.actor, event.object_type, event.object_id) == ("session:mod", "moderation_action", str(aid))
    assert event.details == {"mention_id": m.id, "kind": "filter", "interrupted_before": 3, "interrupted_reset": True}

    await Dispatcher.for_settings(rt.db, rt.connectors, rt.settings).perform_stranded()
    for _ in range(50):  # the app's own pacer may have taken it first: either way, once
        if (await get(rt, ModerationAction, aid)).status == "done":
            break
        await asyncio.sleep(0.1)
    assert (await get(rt, ModerationAction, aid)).status == "done"
    assert [(a.kind, a.target_external_id) for a in platform(rt, "reddit").calls] == [("remove", m.external_id)]
    r = await client.post(f"/moderation/actions/{aid}/settle", data={"outcome": "happened", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 409 and "no longer unknown: it is done now" in await r.text()


async def test_a_hide_settled_as_happened_releases_the_public_reply_it_held_back(client, rt):
    m = await add_mention(rt, "card 4111 1111 1111 1111 charged twice", platform="reddit", handle="ola")
    aid = await unknown_action(rt, m, "hide", rule="pii")
    csrf = await login(client, "alice")
    r = await client.post(f"/conversations/{m.conversation_id}/reply", allow_redirects=False, data={
        "csrf_token": csrf, "text": "Sorry Ola, refunded.", "mention_id": str(m.id), "seen_reply_id": "0",
        "draft_id": "d1"})
    assert r.status == 302
    async with rt.db.session() as s:
        reply = await s.scalar(select(Reply).where(Reply.mention_id == m.id))
    assert reply.status == "pending" and reply.error.startswith(HELD)  # held back: the hide may not have happened
    r = await client.post(f"/moderation/actions/{aid}/settle", data={"outcome": "happened", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 403  # an agent does not settle moderation actions
    mod_csrf = await login(client, "mod")
    r = await client.post(f"/moderation/actions/{aid}/settle", data={"outcome": "happened", "csrf_token": mod_csrf},
                          allow_redirects=False)
    assert r.status == 303
    assert "Public replies held back for it go" in await (await client.get("/moderation")).text()
    row = await get(rt, ModerationAction, aid)
    assert row.status == "done" and "error" not in row.details
    [event] = await audited(rt, "moderation.action_settled")
    assert event.details == {"mention_id": m.id, "kind": "hide", "outcome": "happened"}
    assert platform(rt, "reddit").calls == []  # nothing performed: a person saw it done
    await Dispatcher.for_settings(rt.db, rt.connectors, rt.settings).release_held()
    assert [a.text for a in platform(rt, "reddit").calls] == ["Sorry Ola, refunded."]


async def test_the_api_settles_its_own_interrupted_actions_performing_a_retry_at_once(client, rt):
    m = await add_mention(rt, "you people are clowns", handle="pat")
    ban = await unknown_action(rt, m, "ban", rule="api", actor="token:mod")
    hide = await unknown_action(rt, m, "hide", rule="api", actor="token:mod")
    described = Described(await (await client.get("/api/openapi.json")).json())
    path = "/api/v1/moderation-actions/{id}/settle"
    for user, scopes in (("mia", ["actions:write"]), ("alice", ["replies:write"])):
        h = bearer(await bot_token(rt, user, scopes))
        r = await client.post(f"/api/v1/moderation-actions/{ban}/settle", headers=h, json={"outcome": "happened"})
        assert r.status == 403  # a role that may not act, a token without the scope
    h = bearer(await bot_token(rt, "mod", ["actions:write"]))
    r = await client.post(f"/api/v1/moderation-actions/{ban}/settle", headers=h, json={"outcome": "happened"})
    body = await r.json()
    described.check("POST", path, r.status, body)
    assert r.status == 200 and body["moderation_action"]["status"] == "done"
    async with rt.db.session() as s:
        assert (await s.get(Author, m.author_id)).banned is True  # its effect, as the API records it
    r = await client.post(f"/api/v1/moderation-actions/{hide}/settle", headers=h, json={"outcome": "not_happened"})
    body = await r.json()
    described.check("POST", path, r.status, body)
    assert r.status == 200 and (body["moderation_action"]["status"], body["moderation_action"]["interrupted"]) == \
        ("done", 0)
    assert [(a.kind, a.target_external_id) for a in platform(rt, "x").calls] == [("hide", m.external_id)]
    assert (await get(rt, Mention, m.id)).hidden is True
    r = await client.post(f"/api/v1/moderation-actions/{hide}/settle", headers=h, json={"outcome": "not_happened"})
    body = await r.json()
    described.check("POST", path, r.status, body)
    assert r.status == 409 and body["error"]["current_status"] == "done" and len(platform(rt, "x").calls) == 1
    assert [e.actor for e in await audited(rt, "moderation.action_settled")] == ["token:mod"]
    assert [e.actor for e in await audited(rt, "moderation.action_retried")] == ["token:mod"]


async def test_a_late_executor_answer_wins_over_a_moderators_settling(client, rt):
    m = await add_mention(rt, "spam spam", platform="reddit", handle="quin")
    aid = await unknown_action(rt, m, "remove")
    csrf = await login(client, "mod")
    assert f'data-unknown-action-id="{aid}"' in await (await client.get("/moderation")).text()
    async with rt.db.session() as s:  # the executor's answer, recorded after all (community.moderation.execute)
        await s.execute(update(ModerationAction).where(ModerationAction.id == aid).values(status="failed"))
        await s.commit()
    for outcome in ("happened", "not_happened"):
        r = await client.post(f"/moderation/actions/{aid}/settle", data={"outcome": outcome, "csrf_token": csrf},
                              allow_redirects=False)
        assert r.status == 409 and "no longer unknown: it is failed now" in await r.text()
    assert (await get(rt, ModerationAction, aid)).status == "failed" and platform(rt, "reddit").calls == []
    assert await audited(rt, "moderation.action_settled") == await audited(rt, "moderation.action_retried") == []


@pytest.mark.parametrize("outcome", ["happened", "not_happened"])
async def test_an_answer_landing_between_the_read_and_the_update_wins(client, rt, monkeypatch, outcome):
    m = await add_mention(rt, "spam spam", platform="reddit", handle="tia")
    aid = await unknown_action(rt, m, "remove")
    answer_first(rt, monkeypatch, status="failed")
    r = await client.post(f"/moderation/actions/{aid}/settle", allow_redirects=False,
                          data={"outcome": outcome, "csrf_token": await login(client, "mod")})
    assert r.status == 409 and "no longer unknown: it is failed now" in await r.text()
    assert (await get(rt, ModerationAction, aid)).status == "failed" and platform(rt, "reddit").calls == []
    for action in SETTLED:
        assert await audited(rt, action) == []


async def test_showing_again_a_post_that_exposes_personal_data_is_not_tried_again(client, rt):
    m = await add_mention(rt, "my card 4111 1111 1111 1111", platform="reddit", handle="uma",
                          pii=[{"type": "card_number", "start": 8, "end": 27}])
    aid = await unknown_action(rt, m, "approve", rule="reported")
    csrf = await login(client, "mod")
    r = await client.post(f"/moderation/actions/{aid}/settle", data={"outcome": "not_happened", "csrf_token": csrf},
                          allow_redirects=False)
    assert r.status == 409 and "exposes personal data and stays hidden" in await r.text()
    assert (await get(rt, ModerationAction, aid)).status == "unknown" and platform(rt, "reddit").calls == []
