"""Sessions end for real: signing out (with the form's CSRF token only), disabling a user and a role
change make every cookie issued before worthless, a copied one included."""

from __future__ import annotations

import re

from sqlalchemy import select

from console.accounts import change_role
from console.auth import AUTH, SESSION_COOKIE
from models import AuditEvent, User
from tests.console.conftest import PASSWORDS, Browser, csrf_of, login


def cookie_of(client) -> str:
    return next(c.value for c in client.session.cookie_jar if c.key == SESSION_COOKIE)


async def status_with(app_client, cookie: str, path: str = "/queue") -> int:
    """What a stolen copy of ``cookie`` gets, from a browser of its own."""
    b = Browser(str(app_client.make_url("/")).rstrip("/") + "/")
    try:
        async with b.get(path, allow_redirects=False, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}) as r:
            return r.status
    finally:
        await b.session.close()


async def _user(runtime, name: str) -> User:
    async with runtime.db.session() as s:
        return await s.scalar(select(User).where(User.username == name))


async def test_signing_out_ends_the_session_in_every_browser_and_copies_of_its_cookie(app_client, second_browser,
                                                                                       runtime):
    csrf = await login(app_client, "alice")
    await login(second_browser, "alice")
    copied = cookie_of(app_client)
    assert await status_with(app_client, copied) == 200
    r = await app_client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (302, "/login")
    assert await status_with(app_client, copied) == 302  # the copy no longer signs anyone in
    assert (await second_browser.get("/queue", allow_redirects=False)).status == 302
    async with runtime.db.session() as s:
        [event] = (await s.scalars(select(AuditEvent).where(AuditEvent.action == "logout"))).all()
    assert event.actor == "session:alice"
    await login(app_client, "alice")  # and signing in again works
    assert (await app_client.get("/queue", allow_redirects=False)).status == 200


async def test_signing_out_needs_the_pages_csrf_token_and_offers_a_button_that_has_it(app_client):
    await login(app_client, "alice")
    page = await app_client.get("/logout", allow_redirects=False)  # typed in the address bar, or a link
    assert page.status == 200 and 'action="/logout"' in await page.text()
    for data in ({}, {"csrf_token": "0" * 64}):  # another site's form, or a token gone stale
        r = await app_client.post("/logout", data=data, allow_redirects=False)
        assert r.status == 403 and "expired" in await r.text()
        assert (await app_client.get("/queue", allow_redirects=False)).status == 200  # still signed in
    token = re.findall(r'name="csrf_token" value="([0-9a-f]+)"', await r.text())
    assert token and set(token) == {await csrf_of(app_client)}  # the refusal's own button works
    r = await app_client.post("/logout", data={"csrf_token": token[0]}, allow_redirects=False)
    assert r.status == 302 and (await app_client.get("/queue", allow_redirects=False)).status == 302


async def test_a_stale_sign_out_form_after_signing_in_again_elsewhere_does_not_sign_out(app_client, second_browser):
    old = await login(app_client, "alice")
    await login(app_client, "alice")  # a new nonce: the old tab's token no longer matches
    r = await app_client.post("/logout", data={"csrf_token": old}, allow_redirects=False)
    assert r.status == 403
    r = await app_client.post("/logout", headers={"X-CSRF-Token": await csrf_of(app_client)}, allow_redirects=False)
    assert r.status == 302


async def test_signing_out_without_a_session_just_goes_to_the_sign_in_page(app_client):
    for method in ("GET", "POST"):
        r = await app_client.request(method, "/logout", allow_redirects=False)
        assert (r.status, r.headers["Location"]) == (302, "/login")


async def test_a_role_change_and_disabling_end_the_users_sessions(app_client, second_browser, runtime):
    admin_csrf = await login(app_client, "root")
    bob = (await _user(runtime, "bob")).id
    await login(second_browser, "bob")
    copied = cookie_of(second_browser)
    await app_client.post(f"/admin/users/{bob}/role", data={"csrf_token": admin_csrf, "role": "moderator"})
    assert await status_with(app_client, copied, "/moderation") == 302  # not even with the new role's pages
    await login(second_browser, "bob")
    copied = cookie_of(second_browser)
    for active in ("0", "1"):  # disabled, then enabled again: the old cookie does not come back to life
        await app_client.post(f"/admin/users/{bob}/active", data={"csrf_token": admin_csrf, "active": active})
    assert await status_with(app_client, copied, "/moderation") == 302
    r = await second_browser.post("/login", data={"username": "bob", "password": PASSWORDS["bob"]},
                                  allow_redirects=False)
    assert r.status == 302 and (await second_browser.get("/moderation", allow_redirects=False)).status == 200
    assert (await app_client.get("/admin/users", allow_redirects=False)).status == 200  # the admin's own goes on


async def test_a_role_change_from_the_command_line_ends_sessions_too_and_a_no_op_does_not(app_client, runtime):
    await login(app_client, "alice")
    copied = cookie_of(app_client)
    async with runtime.db.session() as s:
        user = await s.scalar(select(User).where(User.username == "alice"))
        user.active = True  # unchanged
        assert not await change_role(s, user, "agent", "cli")
        await s.commit()
    assert await status_with(app_client, copied) == 200
    async with runtime.db.session() as s:
        user = await s.scalar(select(User).where(User.username == "alice"))
        assert await change_role(s, user, "moderator", "cli")  # what `socialcare users role` calls
        await s.commit()
    assert await status_with(app_client, copied, "/moderation") == 302


async def test_a_cookie_without_the_users_epoch_signs_nobody_in(app_client, runtime):
    """Cookies issued before the epoch existed (before the upgrade) sign their holders out once."""
    serializer = app_client.server.app[AUTH].serializer
    alice = await _user(runtime, "alice")
    assert await status_with(app_client, serializer.dumps({"uid": alice.id, "n": "x"})) == 302
    assert await status_with(app_client, serializer.dumps({"uid": alice.id, "n": "x", "e": alice.session_epoch})) == 200
