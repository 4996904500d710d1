"""Ids and whole numbers in forms and queries are read as in paths (console.paths.parse_id, and
console.paths.parse_int for limits, offsets, a weekday): ASCII digits within range, or the route's
own 4xx. Never a 500 (int() raises past 4300 digits; PostgreSQL's BIGINT overflows past 2**63-1),
never another row ("١" is 1 to int(), and " 5" and "+5" are 5), and nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from console.paths import MAX_ID, parse_int
from models import (
    AuditEvent,
    Author,
    Case,
    Customer,
    CustomerSession,
    DigestSchedule,
    ModerationAction,
    Reply,
    SecureLink,
)
from models.base import utcnow
from service.settings import load_settings
from tests.console.conftest import add_mention, bot_token, login

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def bad_forms_of(n: int | str) -> tuple[str, ...]:
    """What int() reads, or once raised on, that is not ``n`` written in ASCII digits: thousands of
    digits (ValueError), ``n`` in Arabic-Indic digits, signed or padded (int() reads all three as
    ``n``), and the first number past int64."""
    return ("9" * 5000, str(n).translate(ARABIC_INDIC), f"+{n}", f" {n}", f"{n} ", str(2**63))


def shown(value: str) -> str:
    """A bad value as an assertion names it: thousands of digits by their number."""
    return f"<{len(value)} digits>" if len(value) > 30 else repr(value)


@pytest.fixture
def console_settings(tmp_path, any_database_url):
    return load_settings(database_url=any_database_url, bus="inprocess", var_dir=tmp_path / "var", demo=False,
                         dry_run=True, bus_block_ms=50, cookie_secure=False)


async def count(runtime, model, *where) -> int:
    async with runtime.db.session() as s:
        return await s.scalar(select(func.count()).select_from(model).where(*where))


@pytest.mark.parametrize("text, lo, hi, expected", [
    ("0", 0, 6, 0), ("6", 0, 6, 6), ("0006", 0, 6, 6), (str(MAX_ID), 0, MAX_ID, MAX_ID),
    ("7", 0, 6, None), ("0", 1, 500, None), ("", 0, 6, None), ("-1", 0, 6, None), ("+5", 0, 6, None),
    (" 5", 0, 6, None), ("5 ", 0, 6, None), ("\u0665", 0, 6, None), ("\u00b2", 0, 6, None), ("1_0", 0, 500, None),
    ("9" * 5000, 0, MAX_ID, None), ("0" * 20 + "1", 0, 6, None), (str(2**63), 0, MAX_ID, None)])
def test_parse_int_reads_ascii_digits_within_its_bounds_only(text, lo, hi, expected):
    assert parse_int(text, lo, hi) == expected


async def test_confirming_an_identity_takes_the_record_id_in_ascii_digits_only(app_client, runtime):
    now, later = utcnow(), utcnow() + timedelta(hours=1)
    async with runtime.db.session() as s:
        tom = Customer(external_ref="C-1", name="Tom Reid")
        author = Author(platform="x", author_key="4242", handle="vic_77", platform_user_id="4242")
        s.add_all([tom, author])
        await s.flush()
        case = Case(author_id=author.id, category="security")
        s.add(case)
        await s.flush()
        link = SecureLink(case_id=case.id, token_hash="0" * 64, expires_at=later, used_at=now)
        s.add(link)
        await s.flush()
        s.add(CustomerSession(case_id=case.id, link_id=link.id, session_hash="1" * 64, expires_at=later,
                              customer_id=tom.id, verified_at=now))  # the customer verified as Tom
        await s.commit()
        case_id, tom_id = case.id, tom.id
    csrf = await login(app_client, "alice")
    got = {}
    for bad in bad_forms_of(tom_id):
        r = await app_client.post(f"/cases/{case_id}/identity", data={"csrf_token": csrf, "customer_id": bad},
                                  allow_redirects=False)
        got[shown(bad)] = r.status
    assert got == dict.fromkeys(got, 400)
    async with runtime.db.session() as s:
        assert (await s.get(Case, case_id)).customer_id is None  # linked to nobody
    assert await count(runtime, AuditEvent, AuditEvent.action == "case.identity_confirmed") == 0
    r = await app_client.post(f"/cases/{case_id}/identity", data={"csrf_token": csrf, "customer_id": str(tom_id)},
                              allow_redirects=False)
    assert r.status == 303  # the same record, in ASCII digits: linked
    async with runtime.db.session() as s:
        assert (await s.get(Case, case_id)).customer_id == tom_id


async def test_a_conversation_page_ignores_a_mention_query_that_is_not_an_id(app_client, runtime):
    m = await add_mention(runtime, "charged twice for my order")
    await login(app_client, "alice")
    got = {}
    for bad in (*bad_forms_of(m.id), "0", "-1"):
        r = await app_client.get(f"/conversations/{m.conversation_id}", params={"mention": bad},
                                 allow_redirects=False)
        got[shown(bad)] = r.status
        assert r.status != 200 or "charged twice for my order" in await r.text()
    assert got == dict.fromkeys(got, 200)  # the default post, as for any mention not of it


async def test_reporting_replying_and_taking_private_refuse_a_mention_id_not_in_ascii_digits(app_client, runtime):
    m = await add_mention(runtime, "I know where you live, @support", outcome="escalate_private",
                          sensitivity="account")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    got = {}
    for n, bad in enumerate(bad_forms_of(m.id)):
        r = await app_client.post(f"/conversations/{cid}/report", allow_redirects=False,
                                  data={"csrf_token": csrf, "mention_id": bad, "note": "threatening staff"})
        got["report", shown(bad)] = r.status
        r = await app_client.post(f"/conversations/{cid}/reply", allow_redirects=False, data={
            "csrf_token": csrf, "text": "Sorry to hear that", "mention_id": bad, "seen_reply_id": "0",
            "draft_id": f"a{n}"})
        got["reply", shown(bad)] = r.status
        r = await app_client.post(f"/conversations/{cid}/private", allow_redirects=False,
                                  data={"csrf_token": csrf, "mention_id": bad})
        got["private", shown(bad)] = r.status
    assert got == dict.fromkeys(got, 400)
    assert await count(runtime, ModerationAction) == 0
    assert await count(runtime, Reply) == 0
    assert await count(runtime, Case) == 0
    r = await app_client.post(f"/conversations/{cid}/report", allow_redirects=False,
                              data={"csrf_token": csrf, "mention_id": str(m.id), "note": "threatening staff"})
    assert r.status == 302 and await count(runtime, ModerationAction) == 1  # the id in ASCII digits: reported


async def test_a_reply_refuses_a_seen_reply_id_not_in_ascii_digits_within_range(app_client, runtime):
    m = await add_mention(runtime, "charged twice")
    cid = m.conversation_id
    csrf = await login(app_client, "alice")
    got = {}
    for n, bad in enumerate((*bad_forms_of(0), "-1", str(MAX_ID))):  # "٠", "+0", " 0" read as "none seen yet"
        r = await app_client.post(f"/conversations/{cid}/reply", allow_redirects=False, data={
            "csrf_token": csrf, "text": "Refunded today", "mention_id": str(m.id), "seen_reply_id": bad,
            "draft_id": f"b{n}"})
        got[shown(bad)] = r.status
    assert got == dict.fromkeys(got, 400)
    assert await count(runtime, Reply) == 0
    r = await app_client.post(f"/conversations/{cid}/reply", allow_redirects=False, data={
        "csrf_token": csrf, "text": "Refunded today", "mention_id": str(m.id), "seen_reply_id": "0",
        "draft_id": "b3"})
    assert r.status == 302 and await count(runtime, Reply) == 1


async def test_a_digest_schedule_refuses_a_weekday_not_in_ascii_digits(app_client, runtime):
    csrf = await login(app_client, "mia")
    form = {"csrf_token": csrf, "period": "week", "send_at": "08:15", "recipients": "lead@example.com",
            "active": "1"}
    got = {}
    for bad in (*bad_forms_of(4), "7", "-1"):
        r = await app_client.post("/digest/schedule", data={**form, "weekday": bad}, allow_redirects=False)
        got[shown(bad)] = r.status
        assert r.status != 400 or "the weekday must be 0 (Monday) to 6" in await r.text()
    assert got == dict.fromkeys(got, 400)
    assert await count(runtime, DigestSchedule) == 0
    r = await app_client.post("/digest/schedule", data={**form, "weekday": "4"}, allow_redirects=False)
    assert r.status == 302
    async with runtime.db.session() as s:
        assert (await s.scalar(select(DigestSchedule))).weekday == 4


async def test_the_audit_log_refuses_a_before_that_is_not_an_event_id(app_client, runtime):
    await login(app_client, "root")
    got = {}
    for bad in (*bad_forms_of(5), "0", "-1", str(MAX_ID)):
        r = await app_client.get("/admin/audit", params={"before": bad}, allow_redirects=False)
        got[shown(bad)] = r.status
        assert r.status != 400 or "before must be an integer" in await r.text()
    assert got == dict.fromkeys(got, 400)
    for fine in ("", "5", str(MAX_ID - 1)):
        r = await app_client.get("/admin/audit", params={"before": fine}, allow_redirects=False)
        assert r.status == 200, (fine, r.status)


async def test_api_query_numbers_not_in_ascii_digits_within_range_are_a_json_400(app_client, runtime):
    await add_mention(runtime, "charged twice")
    reader = {"Authorization": f"Bearer {await bot_token(runtime, 'alice', ['mentions:read'])}"}
    admin = {"Authorization": f"Bearer {await bot_token(runtime, 'root', ['webhooks', 'deadletters'])}"}
    got = {}
    for path, name, headers in (("/api/v1/mentions", "limit", reader), ("/api/v1/mentions", "offset", reader),
                                ("/api/v1/mentions", "since_id", reader), ("/api/v1/queue", "limit", reader),
                                ("/api/v1/queue", "offset", reader), ("/api/v1/webhooks/1/deliveries", "limit", admin),
                                ("/api/v1/deadletters", "limit", admin)):
        for bad in bad_forms_of(5):
            r = await app_client.get(path, params={name: bad}, headers=headers)
            got[path, name, shown(bad)] = r.status
            if r.status == 400:
                body = await r.json()
                assert body["error"]["status"] == 400 and f"{name} must be an integer" in body["error"]["message"]
    assert got == dict.fromkeys(got, 400)
    r = await app_client.get("/api/v1/mentions", params={"limit": "5", "offset": "0"}, headers=reader)
    assert r.status == 200


async def test_a_console_limit_of_thousands_of_digits_is_a_400_page(app_client, runtime):
    await login(app_client, "root")
    got = {}
    for bad in bad_forms_of(5):
        r = await app_client.get("/admin/deadletters", params={"limit": bad}, allow_redirects=False)
        got[shown(bad)] = r.status
    assert got == dict.fromkeys(got, 400)
