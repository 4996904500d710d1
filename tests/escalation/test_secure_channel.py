"""The customer's secure channel through the web: a link starts one session, a code e-mailed to the
address on record verifies it, and every way around that fails."""

from __future__ import annotations

import secrets
from datetime import timedelta

from escalation_support import MARIA_MAIL, TOM_MAIL, ask_code, csrf_of, enter_code, new_client, start
from sqlalchemy import select

from models import AuditEvent, Case, CustomerSession, SecureLink, SocialIdentity
from models.base import utcnow


async def test_a_known_customer_verifies_with_a_code_sent_to_the_email_on_record(world, smtp_sink):
    case_id, path = await world.case("maria_music3")
    token = path.rsplit("/", 1)[1]
    assert len(token) >= 43  # 32 random bytes: 256 bits
    verify = await start(world.client, path)
    assert verify.status == 200 and verify.url.path == "/secure/verify"
    sent = await ask_code(world.client)
    assert "m•••@e•••.com" in await sent.text()
    code = await smtp_sink.code_for(MARIA_MAIL)
    assert [rcpt for rcpt, _ in smtp_sink.received] == [[MARIA_MAIL]]
    done = await enter_code(world.client, code)
    assert done.status == 303 and done.headers["Location"] == "/secure/chat"
    chat = await world.client.get("/secure/chat")
    assert chat.status == 200 and "Private chat" in await chat.text()
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)
        assert case.status == "verified" and case.customer_id == world.maria and not case.identity_pending
        identity = await s.scalar(select(SocialIdentity).where(SocialIdentity.handle_key == "maria_music3"))
        assert identity.verified_at is not None
        link = await s.scalar(select(SecureLink).where(SecureLink.case_id == case_id))
        assert link.token_hash != token and token not in link.token_hash
        assert abs((link.expires_at - link.created_at) - timedelta(hours=24)) < timedelta(seconds=1)
        cs = await s.scalar(select(CustomerSession).where(CustomerSession.case_id == case_id))
        assert cs.code_hash is None and cs.verified_at is not None  # the code is gone once used
        audit = " ".join(f"{e.reason} {e.details}" for e in await s.scalars(select(AuditEvent)))
    assert code not in audit and MARIA_MAIL not in audit and token not in audit


async def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_secure_pages(world, tmp_path, sqlite_url,
                                                                                    smtp_sink):
    _, path = await world.case("maria_music3")
    page = await world.client.get(path)
    r = await world.client.post(path, data={"csrf_token": csrf_of(await page.text())}, allow_redirects=False)
    header = r.headers["Set-Cookie"]
    assert r.status == 303 and header.startswith("sc_secure=")
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/secure" in header
    assert r.headers["Cache-Control"] == "no-store"
    # with secure cookies on (the default), the cookie is Secure too
    from escalation_support import escalation_settings, open_world

    rt, client, *_ = await open_world(escalation_settings(tmp_path / "b", f"{sqlite_url}-b", smtp_sink.port,
                                                          cookie_secure=True))
    try:
        from escalation_support import World

        other = World(rt, client, 0, 0)
        _, path2 = await other.case("someone")
        page = await client.get(path2)
        r = await client.post(path2, data={"csrf_token": csrf_of(await page.text())}, allow_redirects=False)
        assert "Secure" in r.headers["Set-Cookie"].replace("sc_secure", "")
    finally:
        await client.close()
        await rt.close()


async def test_an_unknown_handle_gives_the_email_on_the_record_and_learns_nothing_either_way(world, smtp_sink):
    case_id, path = await world.case("new_handle_77")
    await start(world.client, path)
    unknown = await ask_code(world.client, "nobody@example.net")
    known = await ask_code(world.client, "TOM.REID@EXAMPLE.ORG ")
    assert unknown.status == known.status == 200
    strip = lambda html: html.replace(csrf_of(html), "")
    assert strip(await unknown.text()) == strip(await known.text())
    code = await smtp_sink.code_for(TOM_MAIL)
    assert [rcpt for rcpt, _ in smtp_sink.received] == [[TOM_MAIL]]  # the address on record, as stored
    assert (await enter_code(world.client, code)).status == 303
    async with world.rt.db.session() as s:
        case = await s.get(Case, case_id)  # verified as Tom for this chat; linked only by an agent
        assert case.status == "verified" and case.customer_id is None and case.identity_pending
        cs = await s.scalar(select(CustomerSession).where(CustomerSession.case_id == case_id))
        assert cs.customer_id == world.tom and cs.verified_at is not None
        assert await s.scalar(select(SocialIdentity).where(SocialIdentity.handle_key == "new_handle_77")) is None


async def test_a_code_requested_for_an_unknown_email_never_verifies(world, smtp_sink):
    _, path = await world.case("new_handle_78")
    await start(world.client, path)
    await ask_code(world.client, "attacker@example.net")
    for guess in ("000000", "123456"):
        assert (await enter_code(world.client, guess)).status == 400
    assert smtp_sink.received == []
    assert (await world.client.get("/secure/chat", allow_redirects=False)).headers["Location"] == "/secure/verify"


# --- attacks: each one must fail to get in ---------------------------------------------------
async def test_an_expired_link_is_refused(world):
    case_id, path = await world.case("maria_music3")
    async with world.rt.db.session() as s:
        link = await s.scalar(select(SecureLink).where(SecureLink.case_id == case_id))
        link.expires_at = utcnow() - timedelta(seconds=1)
        await s.commit()
    page = await world.client.get(path)
    assert page.status == 404 and "csrf_token" not in await page.text()
    r = await world.client.post(path, data={"csrf_token": "x"}, allow_redirects=False)
    assert r.status == 404 and "sc_secure" not in r.cookies


async def test_a_used_link_starts_no_second_session(world):
    case_id, path = await world.case("maria_music3")
    page = await world.client.get(path)
    csrf = csrf_of(await page.text())
    first = await world.client.post(path, data={"csrf_token": csrf}, allow_redirects=False)
    assert first.status == 303
    thief = await new_client(world)
    try:
        assert (await thief.get(path)).status == 404
        replay = await thief.post(path, data={"csrf_token": csrf}, allow_redirects=False)
        assert replay.status == 404 and "sc_secure" not in replay.cookies
        assert (await thief.get("/secure/verify")).status == 403
    finally:
        await thief.close()
    async with world.rt.db.session() as s:
        sessions = list(await s.scalars(select(CustomerSession).where(CustomerSession.case_id == case_id)))
    assert len(sessions) == 1


async def test_a_forged_link_or_cookie_is_refused(world):
    await world.case("maria_music3")
    forged = secrets.token_urlsafe(32)
    assert (await world.client.get(f"/secure/{forged}")).status == 404
    assert (await world.client.post(f"/secure/{forged}", data={"csrf_token": "x"})).status == 404
    world.client.session.cookie_jar.update_cookies({"sc_secure": secrets.token_urlsafe(32)})
    for path in ("/secure/verify", "/secure/chat"):
        assert (await world.client.get(path)).status == 403
    assert (await world.client.get("/secure/verify%2F..")).status == 404


async def test_a_link_for_another_case_gives_no_access_to_this_one(world, smtp_sink):
    """Maria, verified on her case, opens a link issued for Tom's case: the session it starts is
    bound to Tom's case, unverified, and its code goes to Tom — nothing of Maria's carries over."""
    _, maria_path = await world.case("maria_music3", text="my card was charged twice, unknown charge")
    await start(world.client, maria_path)
    await ask_code(world.client)
    await enter_code(world.client, await smtp_sink.code_for(MARIA_MAIL))
    async with world.rt.db.session() as s:
        from escalation.customers import link_identity

        await link_identity(s, world.tom, "x", "tom_r")
        await s.commit()
    tom_case, tom_path = await world.case("tom_r", text="tom's private problem text")
    assert (await start(world.client, tom_path)).url.path == "/secure/verify"
    assert (await world.client.get("/secure/chat", allow_redirects=False)).status == 303  # back to verification
    await ask_code(world.client)
    await smtp_sink.code_for(TOM_MAIL)
    maria_code = await smtp_sink.code_for(MARIA_MAIL)
    assert (await enter_code(world.client, maria_code)).status == 400  # Maria's (used) code is no key to Tom's case
    async with world.rt.db.session() as s:
        assert (await s.get(Case, tom_case)).status == "open"


async def test_brute_forced_codes_lock_the_session_then_end_it(world, smtp_sink):
    settings = world.rt.settings
    case_id, path = await world.case("maria_music3")
    await start(world.client, path)
    await ask_code(world.client)
    code = await smtp_sink.code_for(MARIA_MAIL)
    wrong = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, settings.verify_max_attempts + 1)]
    statuses = [(await enter_code(world.client, guess)).status for guess in wrong]
    assert statuses == [400] * (settings.verify_max_attempts - 1) + [429]
    locked = await enter_code(world.client, code)  # even the right code is refused during the lock-out
    assert locked.status == 429 and "wait" in await locked.text()
    async with world.rt.db.session() as s:
        cs = await s.scalar(select(CustomerSession).where(CustomerSession.case_id == case_id))
        assert cs.verified_at is None and cs.lockouts == 1 and cs.locked_until > utcnow()
        assert cs.code_hash is None  # the guessed-at code is burnt
        # the lock-outs are spent: the next wrong round ends the session
        cs.lockouts, cs.locked_until = settings.verify_max_lockouts - 1, None
        await s.commit()
    await ask_code(world.client)
    code = await smtp_sink.code_for(MARIA_MAIL, nth=2)
    for i in range(settings.verify_max_attempts):
        last = await enter_code(world.client, f"{(int(code) + 1 + i) % 1_000_000:06d}")
    assert last.status == 403
    assert (await world.client.get("/secure/verify")).status == 403
    async with world.rt.db.session() as s:
        assert (await s.get(Case, case_id)).status == "open"
        actions = [e.action for e in await s.scalars(select(AuditEvent).where(AuditEvent.object_id == str(case_id)))]
    assert "verification.locked" in actions and "verification.session_ended" in actions


async def test_parallel_guesses_cannot_exceed_the_attempt_limit(world, smtp_sink):
    import asyncio

    _, path = await world.case("maria_music3")
    await start(world.client, path)
    await ask_code(world.client)
    code = await smtp_sink.code_for(MARIA_MAIL)
    page = await world.client.get("/secure/verify")
    csrf = csrf_of(await page.text())
    guesses = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, 13)]
    results = await asyncio.gather(*(world.client.post("/secure/verify", data={"csrf_token": csrf, "code": g},
                                                       allow_redirects=False) for g in guesses))
    assert sum(r.status == 400 for r in results) <= world.rt.settings.verify_max_attempts - 1
    async with world.rt.db.session() as s:
        failed = [e for e in await s.scalars(select(AuditEvent).where(AuditEvent.action == "verification.failed"))]
    assert len(failed) == world.rt.settings.verify_max_attempts


async def test_forms_without_a_csrf_token_change_nothing(world, smtp_sink):
    case_id, path = await world.case("maria_music3")
    assert (await world.client.post(path, data={}, allow_redirects=False)).status == 403
    assert (await world.client.post(path, data={"csrf_token": "0" * 64}, allow_redirects=False)).status == 403
    await start(world.client, path)  # the link was not used up by the refused posts
    assert (await world.client.post("/secure/code", data={})).status == 403
    assert smtp_sink.received == []
    await ask_code(world.client)
    code = await smtp_sink.code_for(MARIA_MAIL)
    assert (await world.client.post("/secure/verify", data={"code": code}, allow_redirects=False)).status == 403
    async with world.rt.db.session() as s:
        cs = await s.scalar(select(CustomerSession).where(CustomerSession.case_id == case_id))
        assert cs.verified_at is None and cs.failed_attempts == 0 and cs.codes_sent == 1
    # the agent's forms too
    await world.login("alice")
    r = await world.client.post(f"/cases/{case_id}/resolve", data={"return_to_community": "1"}, allow_redirects=False)
    assert r.status == 403
    async with world.rt.db.session() as s:
        assert (await s.get(Case, case_id)).status == "open"


async def test_requests_beyond_the_per_address_rate_limit_are_refused(tmp_path, sqlite_url, smtp_sink):
    from escalation_support import World, escalation_settings, open_world

    rt, client, *_ = await open_world(escalation_settings(tmp_path, sqlite_url, smtp_sink.port,
                                                          secure_rate_per_ip_per_minute=5))
    try:
        world = World(rt, client, 0, 0)
        _, path = await world.case("someone")
        statuses = [(await client.get(f"/secure/{secrets.token_urlsafe(32)}")).status for _ in range(5)]
        assert statuses == [404] * 5
        assert (await client.get(path)).status == 429  # even the right link, from this address, for a minute
    finally:
        await client.close()
        await rt.close()


async def test_the_secure_pages_never_carry_the_case_id_or_customer_data(world, smtp_sink):
    case_id, path = await world.case("maria_music3", text="unknown charge of 89.00 on my card")
    verify = await start(world.client, path)
    await ask_code(world.client)
    await enter_code(world.client, await smtp_sink.code_for(MARIA_MAIL))
    chat = await (await world.client.get("/secure/chat")).text()
    html = await verify.text() + chat
    assert "Maria Lopez" not in html and "+1-555-0100" not in html and MARIA_MAIL not in html
    assert f"/{case_id}" not in html and "case" not in verify.url.path
    assert "unknown charge of 89.00 on my card" in chat  # their own words, in their own chat


async def test_a_resolved_case_closes_the_customers_session(world, smtp_sink):
    case_id, path = await world.case("maria_music3")
    await start(world.client, path)
    await ask_code(world.client)
    await enter_code(world.client, await smtp_sink.code_for(MARIA_MAIL))
    async with world.rt.db.session() as s:
        from escalation.cases import resolve

        await resolve(s, await s.get(Case, case_id), "test")
        await s.commit()
    assert (await world.client.get("/secure/chat")).status == 403


async def test_links_are_unusable_from_another_origin_websocket(world, smtp_sink):
    _, path = await world.case("maria_music3")
    await start(world.client, path)
    await ask_code(world.client)
    await enter_code(world.client, await smtp_sink.code_for(MARIA_MAIL))
    import aiohttp

    try:
        await world.client.ws_connect("/secure/ws", headers={"Origin": "https://evil.example"})
        raise AssertionError("a cross-site websocket was accepted")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 403
    ws = await world.client.ws_connect("/secure/ws")
    assert (await ws.receive_json())["type"] == "history"
    await ws.close()


