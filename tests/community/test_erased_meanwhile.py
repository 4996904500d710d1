"""A moderator's review and a bot's API action on a post erased on a privacy request, before or while
they are carried out: the platform is asked nothing, the action ends ``cancelled`` (reason erased,
no words kept), and the page or the API says that the post was erased."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import console.api.actions as api_actions
import console.moderation as console_moderation
from models import AuditEvent, Mention, ModerationAction
from models.mentions import ERASED_TEXT
from service.erasure import Subject, erase
from tests.community import test_console_pages as pages
from tests.community.test_console_pages import alert_line, held_post, login, status_line
from tests.console.conftest import bot_token

rt, client, world = pages.rt, pages.client, pages.world  # the console's fixtures (not a dry run)


def erased_first(monkeypatch, module, db, subject: Subject) -> None:
    """The person's erasure commits just as the decision is carried out (after it was recorded)."""
    real = module.perform_actions

    async def perform_actions(*args, **kw):
        await erase(db, subject, actor="dpo", reason="privacy request")
        await real(*args, **kw)

    monkeypatch.setattr(module, "perform_actions", perform_actions)


async def rows(db, mention_id: int) -> dict[str, ModerationAction]:
    async with db.session() as s:
        return {a.action: a for a in await s.scalars(select(ModerationAction).where(
            ModerationAction.mention_id == mention_id))}


async def audit(db) -> list[AuditEvent]:
    async with db.session() as s:
        return list(await s.scalars(select(AuditEvent)))


async def test_a_ban_decided_as_the_post_is_erased_is_never_sent_and_the_page_says_so(client, rt, world, monkeypatch):
    m, hold = await held_post(world, "buy followers from Rosa Quint", author="rosa_q")
    erased_first(monkeypatch, console_moderation, rt.db, Subject(platform="reddit", handle="rosa_q"))
    csrf = await login(client, "mod", "/moderation")
    r = await client.post(f"/moderation/{hold.id}/review",
                          data={"decision": "ban", "reason": "Selling followers.", "csrf_token": csrf})
    page = await r.text()
    assert r.status == 410 and alert_line(page) == f"«{ERASED_TEXT}»: {console_moderation.ERASED_WHY}"
    assert "Rosa Quint" not in page and "buy followers" not in page
    assert all(c.calls == [] for c in rt.connectors)  # no ban, no notice to the author
    ban = (await rows(rt.db, m.id))["ban"]
    assert (ban.status, ban.reason, ban.details) == ("cancelled", ERASED_TEXT, {"cancelled": "erased"})
    assert not any("Rosa" in str((e.reason, e.details)) for e in await audit(rt.db))


async def test_a_post_erased_before_its_review_is_refused_by_name_alone_in_bulk_too(client, rt, world):
    m, hold = await held_post(world, "cheap followers, ask Rosa Quint", author="rosa_q")
    _, other = await held_post(world, "followers for sale", author="seller2")
    await erase(rt.db, Subject(platform="reddit", handle="rosa_q"), actor="dpo", reason="privacy request")
    csrf = await login(client, "mod", "/moderation")
    r = await client.post(f"/moderation/{hold.id}/review", data={"decision": "approve", "csrf_token": csrf})
    assert r.status == 410 and alert_line(await r.text()) == f"«{ERASED_TEXT}»: {console_moderation.ERASED_WHY}"
    r = await client.post("/moderation/bulk", data=[("ids", str(hold.id)), ("ids", str(other.id)),
                                                    ("decision", "approve"), ("csrf_token", csrf)])
    notice = status_line(await r.text())
    assert notice == (f"1 reviewed (approved); 1 refused: «{ERASED_TEXT}» ({console_moderation.ERASED_WHY}).")
    assert rt.connectors[0].kinds() == ["approve"] and rt.connectors[0].calls[0].target_external_id != m.external_id
    assert "approve" not in await rows(rt.db, m.id)


async def test_a_bots_hide_as_the_post_is_erased_is_cancelled_and_answered_410(client, rt, world, monkeypatch):
    m = await world.mention("@AcmeHelp Rosa Quint here, buy my followers", platform="x", author="rosa_q",
                            in_reply_to="brand-1")
    erased_first(monkeypatch, api_actions, rt.db, Subject(platform="x", handle="rosa_q"))
    h = {"Authorization": f"Bearer {await bot_token(rt, 'mod', ['actions:write'])}"}
    r = await client.post(f"/api/v1/mentions/{m.id}/actions", json={"action": "hide", "reason": "spam by Rosa"},
                          headers=h)
    assert r.status == 410 and await r.json() == {"error": {"status": 410, "message": api_actions.ERASED_MESSAGE}}
    assert all(c.calls == [] for c in rt.connectors)
    hide = (await rows(rt.db, m.id))["hide"]
    assert (hide.status, hide.reason, hide.details) == ("cancelled", ERASED_TEXT, {"cancelled": "erased"})
    assert not any("Rosa" in str((e.reason, e.details)) for e in await audit(rt.db))
    async with rt.db.session() as s:
        assert not (await s.get(Mention, m.id)).hidden  # nothing was done: nothing to show as done


@pytest.mark.parametrize("action", ["hide", "ban", "approve"])
async def test_a_bots_action_on_an_erased_post_is_refused_with_410_and_nothing_sent(client, rt, world, action):
    m = await world.mention("@AcmeHelp buy my followers", platform="x", author="rosa_q", in_reply_to="brand-1")
    await erase(rt.db, Subject(platform="x", handle="rosa_q"), actor="dpo", reason="privacy request")
    h = {"Authorization": f"Bearer {await bot_token(rt, 'mod', ['actions:write'])}"}
    r = await client.post(f"/api/v1/mentions/{m.id}/actions", json={"action": action, "reason": "spam"}, headers=h)
    assert r.status == 410 and (await r.json())["error"]["message"] == api_actions.ERASED_MESSAGE
    assert all(c.calls == [] for c in rt.connectors) and await rows(rt.db, m.id) == {}


async def test_a_bots_dry_run_approve_of_a_post_erased_as_it_is_recorded_is_cancelled(client, rt, world, monkeypatch):
    """In a dry run nothing reaches the platform either way; the row still ends cancelled, not done."""
    m = await world.mention("@AcmeHelp buy my followers", platform="x", author="rosa_q", in_reply_to="brand-1")
    monkeypatch.setattr(rt.settings, "dry_run", True)
    real = api_actions.decisions.exposes_personal_data

    async def erased_now(session, mention):  # checked just before the action is recorded
        await erase(rt.db, Subject(platform="x", handle="rosa_q"), actor="dpo", reason="privacy request")
        return await real(session, mention)

    monkeypatch.setattr(api_actions.decisions, "exposes_personal_data", erased_now)
    h = {"Authorization": f"Bearer {await bot_token(rt, 'mod', ['actions:write'])}"}
    r = await client.post(f"/api/v1/mentions/{m.id}/actions", json={"action": "approve"}, headers=h)
    assert r.status == 410
    approve = (await rows(rt.db, m.id))["approve"]
    assert (approve.status, approve.details) == ("cancelled", {"cancelled": "erased"})
    events = [e for e in await audit(rt.db) if e.action == "privacy.action_cancelled"]
    assert [(e.object_id, e.details["cancelled"]) for e in events] == [(str(approve.id), "erased")]
