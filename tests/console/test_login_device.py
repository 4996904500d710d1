"""Device cookies (OWASP, "Slow Down Online Guessing Attacks with Device Cookies"): whoever knows a user
name can lock it out, but only for browsers the user has not signed in from; the user's own browser
shows the device cookie its last good sign-in was given and is counted on its own. A device cookie
is good only as issued, to its user, until it expires; anything else is no cookie at all."""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select

from console import login as login_mod
from console.app import create_app
from console.auth import AUTH, Auth
from models import AuditEvent
from tests.console.conftest import PASSWORDS, csrf_of


async def sign_in(client, user: str, password: str | None = None, cookies: dict[str, str] | None = None):
    """POST /login from ``client``; ``cookies``: exactly what a hand-made request sends."""
    data = {"username": user, "password": PASSWORDS[user] if password is None else password}
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
    return await client.post("/login", data=data, headers=headers, allow_redirects=False)


def device_cookie(response) -> tuple[str, str]:
    """The device cookie a good sign-in sets: (name, value)."""
    found = [(name, morsel.value) for name, morsel in response.cookies.items() if name.startswith("sc_device")]
    assert response.status == 302 and len(found) == 1, "a good sign-in sets one device cookie"
    return found[0]


async def lock_out(client, user: str) -> None:
    """What anyone who knows a user name can do: enough wrong passwords to have the name refused."""
    for i in range(login_mod.NAME_FAILURES):
        assert (await sign_in(client, user, f"wrong password {i}")).status == 401
    assert (await sign_in(client, user)).status == 429  # the right password too


async def audit(runtime, action: str) -> list[AuditEvent]:
    async with runtime.db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


@pytest.fixture
async def bare(app_client):
    """Hand-made requests: no cookie jar, only the cookies each request names."""
    async with aiohttp.ClientSession(base_url=str(app_client.make_url("/")),
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def test_the_agent_who_signed_in_here_before_gets_in_while_an_attacker_has_locked_the_name(
        app_client, second_browser, runtime):
    assert (await sign_in(app_client, "bob")).status == 302  # bob's own browser, yesterday
    r = await app_client.post("/logout", data={"csrf_token": await csrf_of(app_client)}, allow_redirects=False)
    assert r.status == 302  # signing out keeps the browser's device cookie
    await lock_out(second_browser, "bob")
    r = await sign_in(app_client, "bob")
    assert r.status == 302 and "sc_session" in r.cookies
    for _ in range(2):  # the attacker is still refused, bob's good sign-in lifted nothing
        r = await sign_in(second_browser, "bob")
        assert r.status == 429 and "sc_session" not in r.cookies
        assert "Too many failed sign-ins" in await r.text() and int(r.headers["Retry-After"]) > 0
    [event] = await audit(runtime, "login.throttled")
    assert event.actor == "session:bob" and event.details == {"limit": "user"}


async def test_behind_a_reverse_proxy_the_shared_address_limit_does_not_stop_a_browser_that_signed_in_before(
        runtime, monkeypatch):
    """Every test client comes from 127.0.0.1, as every client does through a proxy."""
    monkeypatch.setattr(login_mod, "ADDRESS_FAILURES", 3)
    async with TestClient(TestServer(create_app(runtime))) as bob:
        assert (await sign_in(bob, "bob")).status == 302
        async with aiohttp.ClientSession(base_url=str(bob.make_url("/")), cookie_jar=aiohttp.DummyCookieJar()) as other:
            for name in ("alice", "mod", "mia"):
                assert (await sign_in(other, name, "not the password")).status == 401
            assert (await sign_in(other, "alice")).status == 429  # the proxy's address is refused...
            assert (await sign_in(bob, "bob")).status == 302  # ...but not bob's browser behind it
            assert (await sign_in(other, "root")).status == 429
    [event] = await audit(runtime, "login.throttled")
    assert event.details == {"limit": "address"}


def _edit_payload(value: str, **changes) -> str:
    """The cookie with its signed content changed and its signature kept."""
    payload, rest = value.split(".", 1)
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = base64.urlsafe_b64encode(json.dumps({**data, **changes}, separators=(",", ":")).encode())
    return edited.decode().rstrip("=") + "." + rest


def _bob_id(bob: tuple[str, str]) -> int:
    return int(bob[0].rsplit("_", 1)[1])


NOT_BOBS_DEVICE = {
    "signature altered": lambda bob, session, mia: {bob[0]: bob[1][:-2] + ("AA" if bob[1][-2:] != "AA" else "BB")},
    "nonce edited": lambda bob, session, mia: {bob[0]: _edit_payload(bob[1], n="attackers-own-nonce")},
    "signed with a guessed secret": lambda bob, session, mia: {bob[0]: URLSafeTimedSerializer(
        "change-me", salt="socialcare-device").dumps({"uid": _bob_id(bob), "n": "forged"})},
    "bob's session cookie": lambda bob, session, mia: {bob[0]: session},
    "mia's, as issued": lambda bob, session, mia: {mia[0]: mia[1]},
    "mia's, renamed bob's": lambda bob, session, mia: {bob[0]: mia[1]},
    "mia's, uid edited to bob's": lambda bob, session, mia: {bob[0]: _edit_payload(mia[1], uid=_bob_id(bob))},
}


@pytest.mark.parametrize("cookie", NOT_BOBS_DEVICE.values(), ids=NOT_BOBS_DEVICE.keys())
async def test_a_forged_tampered_or_other_users_device_cookie_gives_no_exemption(
        app_client, second_browser, bare, cookie):
    r = await sign_in(app_client, "bob")
    bob, session = device_cookie(r), r.cookies["sc_session"].value
    mia = device_cookie(await sign_in(second_browser, "mia"))  # an attacker with an account of her own
    await lock_out(second_browser, "bob")
    assert (await sign_in(bare, "bob", cookies=dict([bob]))).status == 302  # bob's own cookie gets in
    r = await sign_in(bare, "bob", cookies=cookie(bob, session, mia))
    assert r.status == 429 and "sc_session" not in r.cookies  # the right password, and no exemption


async def test_an_expired_device_cookie_gives_no_exemption(app_client, second_browser, bare, monkeypatch):
    bob = device_cookie(await sign_in(app_client, "bob"))
    issued = int(time.time())
    await lock_out(second_browser, "bob")
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: issued + login_mod.DEVICE_MAX_AGE - 60)
    assert (await sign_in(bare, "bob", cookies=dict([bob]))).status == 302  # a minute before it expires
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: issued + login_mod.DEVICE_MAX_AGE + 60)
    assert (await sign_in(bare, "bob", cookies=dict([bob]))).status == 429  # a minute after


async def test_failures_with_a_device_cookie_lock_out_only_that_cookie(app_client, second_browser, bare, runtime):
    laptop = device_cookie(await sign_in(app_client, "bob"))
    desktop = device_cookie(await sign_in(second_browser, "bob"))
    for i in range(login_mod.DEVICE_FAILURES):  # someone at bob's laptop, or with its cookie, guessing
        assert (await sign_in(bare, "bob", f"guess {i}", cookies=dict([laptop]))).status == 401
    r = await sign_in(bare, "bob", cookies=dict([laptop]))
    assert r.status == 429 and 0 < int(r.headers["Retry-After"]) <= login_mod.THROTTLE_SECONDS
    assert (await sign_in(bare, "bob", cookies=dict([laptop]))).status == 429
    assert (await sign_in(bare, "bob", cookies=dict([desktop]))).status == 302  # bob's other browser
    assert (await sign_in(bare, "bob")).status == 302  # nor were the name or the address charged
    [event] = await audit(runtime, "login.throttled")  # once per cookie and window
    assert event.actor == "session:bob" and event.details == {"limit": "device"}


async def test_a_good_sign_in_issues_a_fresh_http_only_lax_device_cookie_for_90_days(app_client):
    r = await sign_in(app_client, "bob")
    name, first = device_cookie(r)
    morsel = r.cookies[name]
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and morsel["path"] == "/login"
    assert int(morsel["max-age"]) == login_mod.DEVICE_MAX_AGE == 90 * 24 * 3600
    assert not morsel["secure"]  # the tests' console runs with cookie_secure off, as on local http
    assert "bob" not in first and "127.0.0.1" not in first
    assert device_cookie(await sign_in(app_client, "bob"))[1] != first  # a new nonce each time
    assert "sc_device" not in "".join((await sign_in(app_client, "bob", "wrong password")).cookies)


@pytest.mark.parametrize("secure", [True, False])
def test_the_device_cookie_is_secure_when_the_session_cookie_is(secure):
    app = web.Application()
    app[AUTH] = Auth("a secret key", cookie_secure=secure)
    request = make_mocked_request("POST", "/login", app=app)
    user = type("U", (), {"id": 7})()
    response = web.Response()
    login_mod.issue_device(request, response, user)
    morsel = response.cookies[login_mod.device_cookie_name(7)]
    assert bool(morsel["secure"]) is secure and morsel["samesite"] == "Lax" and morsel["httponly"]
    shown = make_mocked_request("POST", "/login", app=app, headers={"Cookie": f"{morsel.key}={morsel.value}"})
    assert login_mod.presented_device(shown, user)
    assert login_mod.presented_device(shown, type("U", (), {"id": 8})()) is None


async def test_a_device_counts_on_its_own_and_a_good_sign_in_clears_only_its_count(runtime):
    now = [1000.0]
    throttle, db = login_mod.LoginThrottle(b"k", clock=lambda: now[0]), runtime.db
    for _ in range(login_mod.NAME_FAILURES):
        assert await throttle.attempt(db, "bob", "10.0.0.1") is None
    assert (await throttle.attempt(db, "bob", "10.0.0.1"))[0] == "user"
    for _ in range(login_mod.DEVICE_FAILURES):  # the name is locked; bob's device is not
        assert await throttle.attempt(db, "bob", "10.0.0.1", "bobs-nonce") is None
    assert await throttle.attempt(db, "bob", "10.0.0.1", "bobs-nonce") == ("device", login_mod.THROTTLE_SECONDS, True)
    assert (await throttle.attempt(db, "bob", "10.0.0.1", "bobs-nonce"))[2] is False  # audited once
    assert await throttle.attempt(db, "bob", "10.0.0.1", "other-nonce") is None
    await throttle.succeeded(db, "bob", "10.0.0.1", "other-nonce")
    assert (await throttle.attempt(db, "bob", "10.0.0.2"))[0] == "user"  # a device's good sign-in lifts no name lock
    now[0] += login_mod.THROTTLE_SECONDS
    assert await throttle.attempt(db, "bob", "10.0.0.1", "bobs-nonce") is None  # the window ended
    for _ in range(login_mod.DEVICE_FAILURES - 2):
        assert await throttle.attempt(db, "bob", "10.0.0.1", "bobs-nonce") is None
    await throttle.succeeded(db, "bob", "10.0.0.1", "bobs-nonce")  # the tenth try was right: the count starts over
    for _ in range(login_mod.DEVICE_FAILURES):
        assert await throttle.attempt(db, "bob", "10.0.0.1", "bobs-nonce") is None
