"""Signing in: `next` never leaves the site, failures are throttled per name and per address, an
unknown name costs what a known one does, the audit log never keeps what was typed as a name, and
the demo's password is shown only to a browser on this machine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from argon2 import PasswordHasher
from sqlalchemy import func, or_, select

from console import login as login_mod
from console.app import create_app
from console.keys import DEMO_LOGIN
from models import AuditEvent, User
from models.escalation import RateCounter
from tests.console.conftest import PASSWORDS, login


async def sign_in(client, user: str, password: str | None = None, **extra):
    data = {"username": user, "password": PASSWORDS.get(user, "") if password is None else password, **extra}
    return await client.post("/login", data=data, allow_redirects=False)


async def audit(runtime, action: str) -> list[AuditEvent]:
    async with runtime.db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


@pytest.mark.parametrize("target", [
    "/\t/evil.example", "/\r\n/evil.example", "/\n/evil.example", "/\x0b/evil.example", "/ /evil.example",
    "/\\evil.example", "/\t\\evil.example", "//evil.example", "https://evil.example/", "javascript:alert(1)",
    "evil.example", "/ok\x7f",
])
async def test_next_never_leads_off_the_site(app_client, target):
    """yarl drops tabs and newlines from a Location: ``/<TAB>/evil.example`` went out as ``//evil.example``."""
    r = await sign_in(app_client, "alice", next=target)
    assert (r.status, r.headers["Location"]) == (302, "/queue")  # the role's own page instead
    page = await (await app_client.get("/login", params={"next": target})).text()
    assert 'name="next" value=""' in page


@pytest.mark.parametrize("target", ["/mentions?outcome=moderate", "/conversations/3#reply", "/cases"])
async def test_a_local_next_is_followed(app_client, target):
    r = await sign_in(app_client, "alice", next=target)
    assert (r.status, r.headers["Location"]) == (302, target)


async def test_failed_sign_ins_are_throttled_per_user_name(app_client, runtime):
    for i in range(login_mod.NAME_FAILURES):
        assert (await sign_in(app_client, "bob", f"wrong password {i}")).status == 401
    for name in ("bob", "BOB"):  # the right password too, and the name in another case
        r = await sign_in(app_client, name, PASSWORDS["bob"])
        assert r.status == 429 and "sc_session" not in r.cookies
        assert "Too many failed sign-ins. Try again in 15 minutes." in await r.text()
        assert 0 < int(r.headers["Retry-After"]) <= login_mod.THROTTLE_SECONDS
    assert (await sign_in(app_client, "alice")).status == 302  # another name from the same address
    [event] = await audit(runtime, "login.throttled")  # one entry per name and window, however many tries
    assert event.actor == "session:bob" and event.details["limit"] == "user"


async def test_failed_sign_ins_are_throttled_per_address(runtime, monkeypatch):
    monkeypatch.setattr(login_mod, "ADDRESS_FAILURES", 3)
    async with TestClient(TestServer(create_app(runtime))) as client:
        for name in ("alice", "bob", "mod"):  # three names, one wrong password each
            assert (await sign_in(client, name, "not the password")).status == 401
        r = await sign_in(client, "mia")
        assert r.status == 429 and "Retry-After" in r.headers
    [event] = await audit(runtime, "login.throttled")
    assert event.actor == "session:mia" and event.details == {"limit": "address"}  # never the address itself


async def test_no_audit_entry_of_signing_in_or_out_keeps_the_clients_address(app_client, runtime):
    """An IP address is personal data, and the audit log is kept for good and reached by no erasure:
    only the throttle, in memory for its window, knows where sign-ins came from."""
    assert (await sign_in(app_client, "carol.smith", "x")).status == 401  # nobody's name
    for i in range(login_mod.NAME_FAILURES):
        assert (await sign_in(app_client, "bob", f"wrong password {i}")).status == 401
    assert (await sign_in(app_client, "bob")).status == 429
    csrf = await login(app_client, "alice")
    r = await app_client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert r.status == 302
    async with runtime.db.session() as s:
        events = list(await s.scalars(select(AuditEvent).where(or_(
            AuditEvent.action.like("login.%"), AuditEvent.action == "logout"))))
    assert {e.action for e in events} == {"login.success", "login.failure", "login.throttled", "logout"}
    kept = json.dumps([[e.actor, e.object_id, e.reason, e.details] for e in events])
    assert "127.0.0.1" not in kept and all("ip" not in (e.details or {}) for e in events)


async def test_sign_ins_sent_all_at_once_cannot_slip_past_the_limit_together(app_client):
    attempts = [sign_in(app_client, "bob", f"guess {i}") for i in range(login_mod.NAME_FAILURES + 5)]
    statuses = sorted(r.status for r in await asyncio.gather(*attempts))
    assert statuses == [401] * login_mod.NAME_FAILURES + [429] * 5


async def test_the_throttle_lifts_when_its_window_ends_and_a_good_sign_in_gives_its_count_back(runtime):
    now = [1000.0]
    throttle, db = login_mod.LoginThrottle(b"k", clock=lambda: now[0]), runtime.db
    for _ in range(login_mod.NAME_FAILURES):
        assert await throttle.attempt(db, "bob", "10.0.0.1") is None
    assert await throttle.attempt(db, "bob", "10.0.0.2") == ("user", login_mod.THROTTLE_SECONDS, True)
    assert await throttle.attempt(db, "bob", "10.0.0.2") == ("user", login_mod.THROTTLE_SECONDS, False)  # audited once
    now[0] += login_mod.THROTTLE_SECONDS - 1
    assert (await throttle.attempt(db, "bob", "10.0.0.3"))[:2] == ("user", 1)
    now[0] += 1
    assert await throttle.attempt(db, "bob", "10.0.0.3") is None
    for _ in range(login_mod.NAME_FAILURES):  # nine typos, then the right password
        assert await throttle.attempt(db, "alice", "10.0.0.4") is None
    await throttle.succeeded(db, "alice", "10.0.0.4")
    assert await throttle.attempt(db, "alice", "10.0.0.5") is None  # the name's count started over
    for i in range(login_mod.ADDRESS_FAILURES - 9):  # the address keeps its nine failures, not the success
        assert await throttle.attempt(db, f"user{i}", "10.0.0.4") is None
    assert (await throttle.attempt(db, "carol", "10.0.0.4"))[0] == "address"


async def test_every_web_process_counts_a_names_failures_together_and_none_keeps_it_in_clear(runtime):
    """Behind a load balancer each web process has its own throttle: the name's (and a device's)
    failures are counted in the database, so ten guesses spread over two processes lock the name
    in both; the counters hold no name as typed, and an ended window's counters are deleted."""
    now = [1000.0]
    first, second = (login_mod.LoginThrottle(b"k", clock=lambda: now[0]) for _ in range(2))
    for i in range(login_mod.NAME_FAILURES):
        assert await (first if i % 2 else second).attempt(runtime.db, "bob", f"10.0.0.{i}") is None
    assert (await first.attempt(runtime.db, "bob", "10.0.1.1"))[0] == "user"
    assert (await second.attempt(runtime.db, "bob", "10.0.1.2"))[0] == "user"
    assert await second.attempt(runtime.db, "alice", "10.0.1.2") is None  # other names go on
    async with runtime.db.session() as s:
        keys = list(await s.scalars(select(RateCounter.key)))
    assert len(keys) == 2 and not any("bob" in k or "alice" in k for k in keys)
    plain = {hashlib.sha256(n.encode()).hexdigest() for n in ("bob", "alice", "login:user:bob", "login:user:alice")}
    assert not any(k.rsplit(":", 1)[1] in plain for k in keys)  # keyed with the secret: no dictionary reverses it
    now[0] += login_mod.THROTTLE_SECONDS  # the windows ended: the next attempt deletes their counters
    assert await first.attempt(runtime.db, "carol", "10.0.2.1") is None
    async with runtime.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(RateCounter)) == 1  # carol's alone


async def test_attempts_sent_together_from_one_address_are_all_counted_against_it(runtime):
    throttle = login_mod.LoginThrottle(b"k")
    results = await asyncio.gather(*(throttle.attempt(runtime.db, f"user{i}", "10.9.9.9")
                                     for i in range(login_mod.ADDRESS_FAILURES + 20)))
    assert sum(r is None for r in results) == login_mod.ADDRESS_FAILURES
    assert {r[0] for r in results if r is not None} == {"address"}


async def test_an_unknown_or_disabled_name_costs_a_password_check(app_client, runtime, monkeypatch):
    """A fast "wrong password" for a name that is nobody's told which names are users."""
    checks = []
    real = PasswordHasher.verify
    monkeypatch.setattr(PasswordHasher, "verify", lambda self, h, p: checks.append(p) or real(self, h, p))
    async with runtime.db.session() as s:
        (await s.scalar(select(User).where(User.username == "bob"))).active = False
        await s.commit()
    for name in ("alice", "nobody-here", "bob"):
        checks.clear()
        assert (await sign_in(app_client, name, "wrong password 123")).status == 401
        assert checks == ["wrong password 123"], name
    checks.clear()
    assert (await sign_in(app_client, "bob", PASSWORDS["bob"])).status == 401  # disabled, right password
    assert checks == [PASSWORDS["bob"]]


async def test_the_audit_log_never_keeps_a_typed_name_that_is_nobodys(app_client, runtime):
    typed = "Summer2026!root"  # a password typed in the name field
    assert (await sign_in(app_client, typed, "x")).status == 401
    assert (await sign_in(app_client, "alice", "wrong password 123")).status == 401
    failures = await audit(runtime, "login.failure")
    assert [(e.actor, e.object_id) for e in failures][-2:] == [("session:unknown", None), ("session:alice", "1")]
    async with runtime.db.session() as s:
        everything = [(e.actor, e.object_id, e.reason, json.dumps(e.details)) for e in await s.scalars(select(AuditEvent))]
    assert typed not in repr(everything) and "Summer2026" not in repr(everything)


async def test_the_demo_password_is_shown_only_to_a_browser_on_this_machine(runtime):
    async with TestClient(TestServer(create_app(runtime, ("demo", "demo-pass-1234")))) as client:
        async def shown(**headers) -> bool:
            return "demo-pass-1234" in await (await client.get("/login", headers=headers)).text()

        assert await shown()  # the quick start: http://127.0.0.1:8080 in a local browser
        assert await shown(Host="localhost:8080")
        assert not await shown(**{"X-Forwarded-For": "203.0.113.9"})  # a reverse proxy on this host
        assert not await shown(Forwarded="for=203.0.113.9;proto=https")
        assert not await shown(**{"X-Real-IP": "203.0.113.9"})
        assert not await shown(Host="care.example.com")  # a DNS name rebound to 127.0.0.1
        r = await client.post("/login", data={"username": "demo", "password": "wrong"},
                              headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status == 401 and "demo-pass-1234" not in await r.text()


@pytest.mark.parametrize("peer, host, expected", [
    ("127.0.0.1", "127.0.0.1:8080", True), ("::1", "[::1]:8080", True), ("127.0.0.5", "localhost", True),
    ("203.0.113.9", "127.0.0.1:8080", False), ("10.0.0.2", "localhost:8080", False), ("", "localhost", False),
])
def test_only_a_loopback_peer_sees_the_demo_password(peer, host, expected):
    app = web.Application()
    app[DEMO_LOGIN] = ("demo", "pw")
    request = make_mocked_request("GET", "/login", headers={"Host": host}, app=app).clone(remote=peer)
    assert (login_mod.local_demo(request) is not None) is expected


async def test_the_login_page_carries_no_demo_password_without_a_demo(app_client):
    page = await (await app_client.get("/login")).text()
    assert not re.search(r'class="demo"', page)


async def test_the_demo_says_how_to_get_an_admin_when_users_were_added_before_its_first_run(runtime, tmp_path, caplog):
    assert await login_mod.ensure_demo_account(runtime.db, tmp_path / "var") is None  # users exist: no demo admin
    assert "socialcare users add NAME --role admin" in caplog.text
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "demo-password").write_text("s3cret\n")  # one made by an earlier run is shown
    assert await login_mod.ensure_demo_account(runtime.db, tmp_path / "var") == ("demo", "s3cret")
