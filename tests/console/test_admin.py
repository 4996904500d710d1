"""Admin pages: the users with their roles and tokens, disabling an account, and the audit log."""

from __future__ import annotations

import re

from sqlalchemy import select

from models import AuditEvent, User
from service.audit import record
from tests.console.conftest import ROLES, bot_token, login


def user_rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-user="([^"]+)">(.*?)</tr>', html, re.DOTALL))


async def _user_id(runtime, name: str) -> int:
    async with runtime.db.session() as s:
        return await s.scalar(select(User.id).where(User.username == name))


async def test_the_users_page_lists_every_user_with_role_tokens_and_status(app_client, runtime):
    await bot_token(runtime, "alice", ["mentions:read"])
    await bot_token(runtime, "alice", ["replies:write"])
    await login(app_client, "root")
    rows = user_rows(await (await app_client.get("/admin/users")).text())
    assert sorted(rows) == sorted(ROLES)
    for name, role in ROLES.items():
        cells = re.findall(r"<td>(.*?)</td>", rows[name], re.DOTALL)
        assert cells[1] == role, name
        assert cells[3] == ("2" if name == "alice" else "0"), name
        assert "active" in rows[name] and "Disable" in rows[name]


async def test_disabling_a_user_ends_their_session_and_is_audited(app_client, second_browser, runtime):
    await login(second_browser, "bob")
    assert (await second_browser.get("/queue", allow_redirects=False)).status == 200
    csrf = await login(app_client, "root")
    bob = await _user_id(runtime, "bob")
    r = await app_client.post(f"/admin/users/{bob}/active", data={"csrf_token": csrf, "active": "0"},
                              allow_redirects=False)
    assert r.status == 302
    rows = user_rows(await (await app_client.get("/admin/users")).text())
    assert "disabled" in rows["bob"] and "Enable" in rows["bob"]
    r = await second_browser.get("/queue", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/login")  # the live session no longer counts
    r = await second_browser.post("/login", data={"username": "bob", "password": "bob password 22"},
                                  allow_redirects=False)
    assert r.status == 401  # nor can they sign in again
    audit = await (await app_client.get("/admin/audit?action=user.disabled")).text()
    assert "session:root" in audit and f"user {bob}" in audit
    root = await _user_id(runtime, "root")
    r = await app_client.post(f"/admin/users/{root}/active", data={"csrf_token": csrf, "active": "0"},
                              allow_redirects=False)
    assert r.status == 400 and "own account" in await r.text()
    await app_client.post(f"/admin/users/{bob}/active", data={"csrf_token": csrf, "active": "1"})
    r = await second_browser.post("/login", data={"username": "bob", "password": "bob password 22"},
                                  allow_redirects=False)
    assert r.status == 302


async def test_the_audit_log_is_newest_first_filters_and_pages(app_client, runtime):
    await login(app_client, "root")  # itself audited: the oldest event
    async with runtime.db.session() as s:
        for n in range(105):
            record(s, "session:alice" if n % 2 else "bot", "test.event", "mention", n, reason=f"reason {n}")
        record(s, "session:mod", "moderation.review.remove", "moderation_action", 7, reason="spam wave")
        await s.commit()
    html = await (await app_client.get("/admin/audit")).text()
    rows = re.findall(r"<tr><td>.*?</tr>", html, re.DOTALL)
    assert len(rows) == 100  # one page
    assert "moderation.review.remove" in rows[0] and "spam wave" in rows[0]  # newest first
    assert "reason 104" in rows[1]
    older = re.search(r'href="\?action=&amp;actor=&amp;before=(\d+)"', html)
    assert older, "no link to the older events"
    html2 = await (await app_client.get(f"/admin/audit?before={older.group(1)}")).text()
    rows2 = re.findall(r"<tr><td>.*?</tr>", html2, re.DOTALL)
    assert rows2 and all("reason 104" not in r for r in rows2)
    assert len(rows2) == 7 and "reason 0" in rows2[-2] and "login.success" in rows2[-1]  # down to the oldest
    by_mod = re.findall(r"<tr><td>.*?</tr>", await (await app_client.get("/admin/audit?actor=session:mod")).text(), re.DOTALL)
    assert len(by_mod) == 1 and "spam wave" in by_mod[0]
    by_action = await (await app_client.get("/admin/audit?action=test.event&actor=bot")).text()
    found = re.findall(r"<tr><td>.*?</tr>", by_action, re.DOTALL)
    assert len(found) == 53 and all("<bdi>bot</bdi>" in r for r in found)
    async with runtime.db.session() as s:
        total = len((await s.scalars(select(AuditEvent))).all())
    assert total >= 106
    r = await app_client.get("/admin/audit?before=soon", allow_redirects=False)
    assert r.status == 400


def token_rows(html: str, user: str) -> list[str]:
    block = re.search(rf'<tr class="tokens" data-tokens-of="{user}">(.*?)</table>', html, re.DOTALL)
    return re.findall(r'<tr data-token="\d+">(.*?)</tr>', block.group(1), re.DOTALL) if block else []


async def test_an_admin_sees_each_token_and_revokes_one_audited(app_client, runtime):
    from models import ApiToken

    value = await bot_token(runtime, "alice", ["mentions:read", "replies:write"])
    await bot_token(runtime, "alice", ["templates:read"])
    csrf = await login(app_client, "root")
    html = await (await app_client.get("/admin/users")).text()
    rows = token_rows(html, "alice")
    assert len(rows) == 2 and "mentions:read, replies:write" in html and "alice-bot" in rows[0]
    assert value not in html
    async with runtime.db.session() as s:
        first = await s.scalar(select(ApiToken.id).where(ApiToken.scopes == ["mentions:read", "replies:write"]))
    r = await app_client.post(f"/admin/tokens/{first}/revoke", data={"csrf_token": csrf}, allow_redirects=False)
    assert r.status == 303
    page = await (await app_client.get(r.headers["Location"])).text()
    assert "token alice-bot of alice revoked" in page
    assert re.findall(r"<td>(.*?)</td>", user_rows(page)["alice"], re.DOTALL)[3] == "1"  # active ones
    assert (await app_client.get("/api/v1/mentions", headers={"Authorization": f"Bearer {value}"})).status == 401
    async with runtime.db.session() as s:
        [event] = (await s.scalars(select(AuditEvent).where(AuditEvent.action == "token.revoked"))).all()
    assert event.actor == "session:root" and event.details["token_id"] == first


async def test_an_admin_changes_a_role_audited_but_not_the_last_admins_own(app_client, runtime):
    csrf = await login(app_client, "root")
    bob = await _user_id(runtime, "bob")
    r = await app_client.post(f"/admin/users/{bob}/role", data={"csrf_token": csrf, "role": "moderator"},
                              allow_redirects=False)
    assert r.status == 303 and "bob+is+now+moderator" in r.headers["Location"]
    async with runtime.db.session() as s:
        assert (await s.get(User, bob)).role == "moderator"
        [event] = (await s.scalars(select(AuditEvent).where(AuditEvent.action == "user.role_changed"))).all()
    assert (event.actor, event.details) == ("session:root", {"old": "agent", "new": "moderator"})
    root = await _user_id(runtime, "root")
    r = await app_client.post(f"/admin/users/{root}/role", data={"csrf_token": csrf, "role": "agent"},
                              allow_redirects=False)
    assert r.status == 409 and "last active admin" in await r.text()
    r = await app_client.post(f"/admin/users/{bob}/role", data={"csrf_token": csrf, "role": "boss"},
                              allow_redirects=False)
    assert r.status == 400 and "unknown role" in await r.text()
    async with runtime.db.session() as s:
        assert (await s.get(User, root)).role == "admin" and (await s.get(User, bob)).role == "moderator"
