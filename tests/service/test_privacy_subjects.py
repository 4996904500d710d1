"""Who a privacy request is about (service.privacy_subject), on SQLite and PostgreSQL: a handle that
changed hands is refused as ambiguous rather than merged with a stranger's account; an account named
by user id does not reach, through a handle it once had, what that handle now names for someone
else; an identity is found by its handle once no author shows it; a customer is exported with the
cases a session of theirs verified as them on."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from privacy_support import SECRET_KEY, T0, bury_posts, dump, found_in
from sqlalchemy import select

from escalation import chat
from escalation.customers import link_identity
from models import Author, Case, CaseMessage, Customer, CustomerSession, Mention, SecureLink, SocialIdentity
from models.base import utcnow
from models.mentions import ERASED_TEXT
from service import erasure, privacy_export, retention
from service.audit import record
from service.bus import Envelope
from service.erasure import AmbiguousSubject, Subject
from service.stages.base import StageContext
from service.stages.ingest import IngestStage


@pytest.fixture
async def bus(make_bus):
    return await make_bus(max_deliveries=1)


async def handle_changed_hands(w) -> None:
    """Account 111 was @maria a year ago; it renamed, and account 222, a stranger, took @maria."""
    await w.ingest(w.post("zqxfirst my order 55 is late", author="maria", name="Maria Lopez", user_id="111",
                          at=T0 - timedelta(days=300)))
    await w.ingest(w.post("strangerword I live at 9 Elm Road", author="maria", name="Mark Stranger", user_id="222"))


async def test_a_handle_two_accounts_carried_is_refused_as_ambiguous_and_changes_nothing(world):
    w = world
    await handle_changed_hands(w)
    before = await dump(w.db)
    for call in (lambda: privacy_export.export(w.db, Subject(platform="x", handle="@Maria"), actor="dpo",
                                               reason="art 15", secret=SECRET_KEY),
                 lambda: erasure.erase(w.db, Subject(platform="x", handle="maria"), actor="dpo", reason="art 17",
                                       secret=SECRET_KEY),
                 lambda: erasure.erase(w.db, Subject(platform="x", handle="maria"), actor="dpo", reason="art 17",
                                       secret=SECRET_KEY, dry_run=True)):
        with pytest.raises(AmbiguousSubject) as refused:
            await call()
        assert refused.value.user_ids == ["111", "222"]
        assert "ambiguous subject" in str(refused.value) and "--user-id" in str(refused.value)
    assert await dump(w.db) == before  # no export recorded, no tombstone, nothing erased

    doc = await privacy_export.export(w.db, Subject(platform="x", user_id="111"), actor="dpo", reason="art 15",
                                      secret=SECRET_KEY)
    assert [p["text"] for p in doc["posts"]] == ["zqxfirst my order 55 is late"]
    assert "strangerword" not in json.dumps(doc, default=str) and "Stranger" not in json.dumps(doc, default=str)
    counts = await erasure.erase(w.db, Subject(platform="x", user_id="111"), actor="dpo", reason="art 17",
                                 secret=SECRET_KEY)
    assert counts["posts"] == 1 and counts["authors"] == 1
    tables = await dump(w.db)
    assert found_in(tables, "zqxfirst") == [] and found_in(tables, "maria lopez") == []
    assert found_in({"mentions": tables["mentions"]}, "strangerword")  # the stranger's post and name are kept
    assert found_in({"authors": tables["authors"]}, "mark stranger")
    # the handle now names the stranger alone: a request by it is theirs
    doc = await privacy_export.export(w.db, Subject(platform="x", handle="maria"), actor="dpo", reason="art 15",
                                      secret=SECRET_KEY)
    assert [a["platform_user_id"] for a in doc["authors"]] == ["222"]


async def test_by_user_id_a_handle_now_anothers_reaches_neither_its_identity_nor_its_dead_letters_nor_tombstone(
        world, bus):
    """Her old handle @maria, now the stranger's: the CRM's link by that handle, the stranger's dead
    letter and the stranger's posts on their way to ingest are not hers to erase."""
    w = world
    await handle_changed_hands(w)
    async with w.db.session() as s:
        crm = Customer(name="Someone Imported", email="someone@example.com")
        s.add(crm)
        await s.flush()
        await link_identity(s, crm.id, "x", "@maria")  # a CRM import: by handle, no user id
        await s.commit()
    hers = w.post("zqxdead never stored", author="maria", user_id="111")
    theirs = w.post("strangerdead never stored", author="maria", user_id="222")
    await bury_posts(bus, hers, theirs)
    on_its_way = w.post("strangerlate published before the erasure", author="maria", user_id="222",
                        at=utcnow() - timedelta(minutes=1))

    counts = await erasure.erase(w.db, Subject(platform="x", user_id="111"), actor="dpo", reason="art 17",
                                 secret=SECRET_KEY, bus=bus)
    assert counts["dead_letters"] == 1 and "identities" not in counts
    assert [d.payload["mention"]["text"] for d in await bus.dead_letters()] == ["strangerdead never stored"]
    async with w.db.session() as s:
        assert [i.handle_key for i in await s.scalars(select(SocialIdentity))] == ["maria"]
    tables = await dump(w.db)
    assert len(tables["erasure_tombstones"]) == 2  # the gate and her id: never the handle
    out = await IngestStage(StageContext(settings=w.settings, db=w.db)).handle(
        [Envelope(id="1", topic="ingest", key="k", payload={"mention": on_its_way.to_dict()})])
    assert len(out) == 1  # stored: the stranger's, not a tombstoned post
    async with w.db.session() as s:
        assert await s.scalar(select(Mention.id).where(Mention.text.like("strangerlate%"))) is not None


async def test_an_identity_is_found_by_its_handle_once_no_author_shows_it(world):
    """Keyed by user id (migration 0015), the handle kept only to show: after the retention purge
    anonymised her inactive author, a request by handle still finds the identity."""
    w = world
    async with w.db.session() as s:
        maria = Customer(name="Maria Lopez", email="maria@example.com")
        s.add(maria)
        await s.flush()
        await link_identity(s, maria.id, "x", "MariaL", user_id="id-marial", source="verification")
        await s.commit()
    await w.ingest(w.post("zqx old post", author="MariaL", name="Maria Lopez", user_id="id-marial",
                          at=utcnow() - timedelta(days=400)))
    assert (await retention.purge(w.db, retention.cutoff_for(365)))["authors"] == 1
    doc = await privacy_export.export(w.db, Subject(platform="x", handle="@marial"), actor="dpo", reason="art 15",
                                      secret=SECRET_KEY)
    assert [(i["handle"], i["platform_user_id"]) for i in doc["identities"]] == [("MariaL", "id-marial")]
    assert [c["email"] for c in doc["customers"]] == ["maria@example.com"]
    counts = await erasure.erase(w.db, Subject(platform="x", handle="MARIAL"), actor="dpo", reason="art 17",
                                 secret=SECRET_KEY)
    assert counts["identities"] == 1
    assert found_in(await dump(w.db), "id-marial") == []
    assert await erasure.erase(w.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="again",
                               secret=SECRET_KEY) == Counter()  # recognised: nothing left


async def pending_case(s, mention_id: int, *verified_as: int) -> Case:
    """A case someone's account opened, identity pending, with a used link and a session per
    customer each visitor verified as."""
    author_id = await s.scalar(select(Mention.author_id).where(Mention.id == mention_id))
    case = Case(category="security", author_id=author_id, opened_by_mention_id=mention_id, status="verified",
                identity_pending=True)
    s.add(case)
    await s.flush()
    for customer_id in verified_as:
        link = SecureLink(case_id=case.id, token_hash=f"{customer_id}{case.id}".ljust(64, "h"), used_at=utcnow(),
                          expires_at=utcnow() + timedelta(hours=1))
        s.add(link)
        await s.flush()
        s.add(CustomerSession(case_id=case.id, link_id=link.id, session_hash=f"{customer_id}{case.id}".ljust(64, "s"),
                              customer_id=customer_id, expires_at=utcnow() + timedelta(hours=1), verified_at=utcnow()))
    return case


async def test_a_customer_is_exported_and_erased_with_the_chat_where_a_session_verified_as_them(world):
    w = world
    first = await w.ingest(w.post("acctword my account was taken over", author="acct_a", user_id="id-a"))
    second = await w.ingest(w.post("acctword2 again", author="acct_b", user_id="id-b"))
    async with w.db.session() as s:
        carla, dave = Customer(name="Carla Customer", email="carla@example.com"), Customer(name="Dave D")
        s.add_all([carla, dave])
        await s.flush()
        alone = await pending_case(s, first, carla.id)
        await chat.post(s, alone, "customer", "zqxchat I am Carla, my card ends 4242")
        shared = await pending_case(s, second, carla.id, dave.id)  # two visitors, two records
        await chat.post(s, shared, "customer", "daveword who wrote this?")
        for case, who in ((alone, carla.id), (shared, carla.id), (shared, dave.id)):
            record(s, "customer", "verification.succeeded", "case", case.id, customer_id=who, identity="pending")
        record(s, "alice", "case.assigned", "case", shared.id, to="alice")  # names nobody: whose chat?
        await s.commit()
        ids = {"carla": carla.id, "dave": dave.id, "alone": alone.id, "shared": shared.id}
    doc = await privacy_export.export(w.db, Subject(customer_id=ids["carla"]), actor="dpo", reason="art 15",
                                      secret=SECRET_KEY)
    cases = {c["id"]: c for c in doc["cases"]}
    assert set(cases) == {ids["alone"], ids["shared"]} and all(c["verified_session"] for c in cases.values())
    assert [m["body"] for m in cases[ids["alone"]]["messages"]] == ["zqxchat I am Carla, my card ends 4242"]
    assert cases[ids["shared"]]["messages"] == []  # whose words are whose cannot be told: left out
    assert [len(c["sessions"]) for c in (cases[ids["alone"]], cases[ids["shared"]])] == [1, 1]  # hers only
    assert [len(c["secure_links"]) for c in (cases[ids["alone"]], cases[ids["shared"]])] == [1, 1]
    text = json.dumps(doc, default=str)
    assert "acctword" not in text and "daveword" not in text and "Dave" not in text
    assert any("verified_session" in n["what"] for n in doc["not_included"])
    assert sorted((e["object_id"], e["details"]["customer_id"]) for e in doc["audit_events"]) == \
        [(str(ids["alone"]), ids["carla"]), (str(ids["shared"]), ids["carla"])]  # never Dave's

    counts = await erasure.erase(w.db, Subject(customer_id=ids["carla"]), actor="dpo", reason="art 17",
                                 secret=SECRET_KEY)
    assert counts["sessions_revoked"] == 2 and counts["case_messages"] == 1
    tables = await dump(w.db)
    assert found_in(tables, "zqxchat") == [] and found_in(tables, "carla") == []
    assert len(found_in(tables, "daveword")) == 1  # not hers to erase
    assert len(found_in(tables, "acctword my account")) == 1  # the account's post: its author's
    async with w.db.session() as s:
        dave_session = await s.scalar(select(CustomerSession).where(CustomerSession.customer_id == ids["dave"]))
        assert dave_session.revoked_at is None
        assert (await s.get(Author, (await s.get(Mention, first)).author_id)).handle == "acct_a"
        chat_left = await s.scalars(select(CaseMessage.body).where(CaseMessage.case_id == ids["alone"],
                                                                   CaseMessage.sender == "customer"))
        assert list(chat_left) == [ERASED_TEXT]


async def test_a_customer_whose_imported_handle_two_accounts_carried_is_refused_as_ambiguous(world):
    """A CRM import links a handle, not an account: when two accounts showed it, exporting or erasing
    the customer would take the stranger in; refused, naming both accounts, and nothing changes."""
    await world.ingest(world.post("zqxfirst my order 55 is late", author="maria", name="Maria Lopez", user_id="111",
                                  at=T0 - timedelta(days=300)))
    await world.ingest(world.post("strangerword I live at 9 Elm Road", author="maria", name="Mark Stranger",
                                  user_id="222"))
    async with world.db.session() as s:
        crm = Customer(name="Someone Imported", email="someone@example.com")
        s.add(crm)
        await s.flush()
        await link_identity(s, crm.id, "x", "@maria")
        await s.commit()
        cid = crm.id
    for request in (privacy_export.export(world.db, Subject(customer_id=cid), actor="dpo", reason="art 15",
                                          secret=SECRET_KEY),
                    erasure.erase(world.db, Subject(customer_id=cid), actor="dpo", reason="art 17",
                                  secret=SECRET_KEY)):
        with pytest.raises(AmbiguousSubject, match="111, 222"):
            await request
    async with world.db.session() as s:
        assert len(list(await s.scalars(select(Mention).where(Mention.text.like("%strangerword%"))))) == 1
        assert (await s.get(Customer, cid)).name == "Someone Imported"


async def test_erasing_a_customer_leaves_the_handle_they_gave_up_to_its_new_owner(world):
    """Maria (account 111) once showed @maria; account 222 shows it now. Erasing her customer record
    tombstones her account, not the handle: 222's post on its way in is still stored."""
    await world.ingest(world.post("zqxfirst my order 55 is late", author="maria", name="Maria Lopez", user_id="111",
                                  at=T0 - timedelta(days=300)))
    await world.ingest(world.post("strangerword hello", author="maria", name="Mark Stranger", user_id="222"))
    async with world.db.session() as s:
        crm = Customer(name="Maria Lopez", email="m@example.com")
        s.add(crm)
        await s.flush()
        await link_identity(s, crm.id, "x", "maria", user_id="111", source="verification")
        await s.commit()
        cid = crm.id
    on_its_way = world.post("strangerlate published before the erasure", author="maria", user_id="222",
                            at=utcnow() - timedelta(minutes=1))
    counts = await erasure.erase(world.db, Subject(customer_id=cid), actor="dpo", reason="art 17", secret=SECRET_KEY)
    assert counts["posts"] == 1
    await IngestStage(StageContext(settings=world.settings, db=world.db)).handle(
        [Envelope(id="1", topic="ingest", key="k", payload={"mention": on_its_way.to_dict()})])
    async with world.db.session() as s:
        texts = set(await s.scalars(select(Mention.text)))
    assert {"strangerword hello", "strangerlate published before the erasure"} <= texts
    assert not any("zqxfirst" in t for t in texts)
