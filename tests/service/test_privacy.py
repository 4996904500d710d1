"""service.erasure, service.privacy and service.retention on SQLite and PostgreSQL: one person's erasure, the retention purge.

The data is made the way the service makes it (ingest, the route and act stages, the case chat, a
moderator's report, the outgoing-webhook scanner), then every column of every table is searched for
what must be gone. Other people's data, the triage labels and the digest's counts must stay.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from privacy_support import (
    SECRET_KEY,
    T0,
    FakeConnector,
    World,
    dump,
    found_in,
    settings_for,
    with_demo_answers,
)
from sqlalchemy import func, select, update

from community import moderation
from console import webhooks_out
from console.digest import compute
from console.queue_data import queue_items
from escalation import chat
from escalation.customers import link_identity
from listener.ingest import ingest_batch
from models import (
    AuditEvent,
    Author,
    Case,
    CaseMessage,
    CommunityAnswer,
    Customer,
    Mention,
    Reply,
    SecureLink,
    SocialIdentity,
    TriageResult,
)
from models.base import utcnow
from models.console import WebhookDelivery, WebhookSubscription
from models.mentions import ERASED_TEXT
from service import erasure, privacy, retention
from service.audit import record
from service.bus import Envelope
from service.erasure import Subject, UnknownSubject
from service.stages.base import StageContext
from service.stages.triage import TriageStage
from triage.protocol import PiiSpan, Score, TriageOutput

# what Maria wrote and is called: every one of these must be gone after her erasure
MARIA_VALUES = ("zqx", "marial", "maria lopez", "maria.lopez@example.com", "555 010 9999", "id-marial", "crm-77")
OTHERS = ("tomword", "samanswer", "tom_b")  # Tom's and Sam's words and handle: untouched


@pytest.fixture
async def world(db, tmp_path):
    return await with_demo_answers(db, tmp_path)


async def populate(w: World) -> dict:
    """Maria (a customer with accounts on X and Discourse), Tom and Sam, through the real paths."""
    async with w.db.session() as s:
        maria = Customer(name="Maria Lopez", email="maria.lopez@example.com", phone="+1 555 010 9999",
                         notes="prefers zqxnote", attributes={"tier": "zqxgold"}, external_ref="CRM-77")
        s.add(maria)
        await s.flush()
        await link_identity(s, maria.id, "x", "MariaL", user_id="id-marial")
        await link_identity(s, maria.id, "discourse", "MariaL")
        await s.commit()
    ids = {"maria": maria.id}
    ids["reset"] = await w.ingest(w.post("zqxbeta how do I reset my password", author="MariaL", name="Maria Lopez",
                                         user_id="id-marial"), issue="account_access")
    ids["praise"] = await w.ingest(w.post("zqxgamma I love the new mixes", author="MariaL", name="Maria Lopez",
                                          user_id="id-marial"), issue="praise", sentiment="positive")
    ids["billing"] = await w.ingest(w.post("zqxdelta please change my billing address", author="MariaL",
                                           name="Maria Lopez", user_id="id-marial"),
                                    issue="billing", sentiment="negative", sensitivity="account")
    ids["hacked"] = await w.ingest(w.post("zqxalpha someone hacked my account", author="MariaL", name="Maria Lopez",
                                          user_id="id-marial"), issue="account_access", sentiment="negative",
                                   sensitivity="security", pii=True)
    question = w.post("zqxepsilon how do I turn on crossfade", author="MariaL", name="Maria Lopez",
                      user_id="id-discourse-maria", platform="discourse")
    ids["question"] = await w.ingest(question, issue="how_to")
    ids["answer"] = await w.ingest(w.post("samanswer: settings, playback, crossfade", author="sam", platform="discourse",
                                          in_reply_to=question.external_id, conversation_id=question.external_id,
                                          raw={"accepted_answer": True}), issue="how_to")
    ids["tom_praise"] = await w.ingest(w.post("tomword the new playlist feature is great", author="tom_b"),
                                       issue="praise", sentiment="positive")
    ids["tom_login"] = await w.ingest(w.post("tomword2 my login fails", author="tom_b"), issue="account_access")
    for key in ("reset", "praise", "billing", "question", "answer", "tom_praise", "tom_login", "hacked"):
        await w.run(ids[key])  # one by one: the case opens last, so the others are not follow-ups
    async with w.db.session() as s:
        case = await s.scalar(select(Case).where(Case.opened_by_mention_id == ids["hacked"]))
        ids["case"] = case.id
        await chat.post(s, case, "customer", "zqxchat my card ends 4242")
        await moderation.report(s, await s.get(Mention, ids["praise"]), "alice", "Maria Lopez posted zqxreport")
        record(s, "alice", "customer.viewed", "customer", maria.id, reason="Maria Lopez called about zqxview")
        s.add(WebhookSubscription(name="bot", url="http://127.0.0.1:9/hook", secret="s", created_by="admin",
                                  events=["mention.triaged", "mention.routed", "case.opened"], created_at=T0 - timedelta(days=1)))
        await s.commit()
    assert await webhooks_out.scan(w.db, now=utcnow() + timedelta(minutes=1)) > 0
    return ids


async def digest_numbers(db) -> tuple:
    async with db.session() as s:
        d = await compute(s, "day", T0 + timedelta(days=1))
    return d.total, d.sentiment, d.issues, d.volume, [p.text for p in d.positive], dict(d.top_terms)


async def test_erasing_a_customer_leaves_their_words_and_names_in_no_table_and_keeps_everyone_else(world):
    ids = await populate(world)
    before = await dump(world.db)
    for value in MARIA_VALUES + OTHERS:  # the data is really there to begin with
        assert found_in(before, value), value
    assert found_in(before, "zqxalpha") and any("zqx" in r for r in before["case_messages"])
    assert any("zqx" in r for r in before["community_answers"]) and any("zqx" in r for r in before["webhook_deliveries"])
    total, sentiment, issues, volume, positive, _ = await digest_numbers(world.db)
    assert any("zqxgamma" in p for p in positive)
    async with world.db.session() as s:
        assert [i.mention_id for i in await queue_items(s)] == [ids["billing"]]

    counts = await erasure.erase(world.db, Subject(customer_id=ids["maria"]), actor="dpo",
                                 reason="GDPR request from maria.lopez@example.com, ticket 42", secret=SECRET_KEY)

    after = await dump(world.db)
    for value in MARIA_VALUES:
        assert found_in(after, value) == [], value
    for value in OTHERS:
        assert found_in(after, value), value
    assert counts["posts"] == 5 and counts["authors"] == 2 and counts["identities"] == 2 and counts["customers"] == 1
    assert counts["case_messages"] >= 2 and counts["community_answers"] == 1 and counts["webhook_deliveries"] > 0
    async with world.db.session() as s:
        posts = {m.id: m for m in await s.scalars(select(Mention))}
        for key in ("reset", "praise", "billing", "hacked", "question"):
            m = posts[ids[key]]
            assert (m.text, m.url, m.raw, m.deleted) == (ERASED_TEXT, None, {}, True)
            assert m.external_id and m.platform and m.created_at and m.conversation_id
        assert posts[ids["tom_praise"]].text.startswith("tomword") and not posts[ids["tom_praise"]].deleted
        tri = await s.scalar(select(TriageResult).where(TriageResult.mention_id == ids["hacked"]))
        assert (tri.sensitivity, tri.issue_type, tri.sentiment) == ("security", "account_access", "negative")
        assert tri.scores["sensitivity"]["label"] == "security" and tri.scores["sensitivity"]["explanation"] == []
        assert tri.scores["pii"] == [] and tri.scores["priority_explanation"] == []
        authors = list(await s.scalars(select(Author).where(Author.author_key.startswith(privacy.ERASED_KEY))))
        assert len(authors) == 2 and all(a.handle is None and a.customer_id is None for a in authors)
        assert await s.scalar(select(func.count()).select_from(SocialIdentity)) == 0
        maria = await s.get(Customer, ids["maria"])
        assert (maria.name, maria.email, maria.phone, maria.notes, maria.external_ref, maria.attributes) == \
            (ERASED_TEXT, None, None, None, None, {})
        replies = list(await s.scalars(select(Reply).where(Reply.mention_id.in_([ids["reset"], ids["hacked"]]))))
        assert replies and all(r.text == ERASED_TEXT for r in replies)
        assert all(r.status in ("dry_run", "sent", "deleted") for r in replies)  # statuses kept, none left to send
        assert [r.text for r in await s.scalars(select(Reply).where(Reply.mention_id == ids["tom_login"]))] != \
            [ERASED_TEXT]
        assert await s.scalar(select(func.count()).select_from(SecureLink).where(
            SecureLink.case_id == ids["case"], SecureLink.revoked_at.is_(None), SecureLink.used_at.is_(None))) == 0
        answer = await s.scalar(select(CommunityAnswer))
        assert not answer.active and answer.question == ERASED_TEXT
        hold = await s.scalar(select(moderation.ModerationAction).where(
            moderation.ModerationAction.mention_id == ids["praise"]))
        assert hold.status == "reviewed" and hold.reason == ERASED_TEXT  # off the moderation queue
        event = await s.scalar(select(AuditEvent).where(AuditEvent.action == "privacy.erased"))
        assert event.actor == "dpo" and "ticket 42" in event.reason and "maria" not in event.reason.lower()
        assert event.details["counts"] == dict(counts) and set(event.details["author_ids"]) == {a.id for a in authors}
        assert [i.mention_id for i in await queue_items(s)] == []  # her account question left the agents' queue
    # the digest counts as before; her posts are no longer notable, nor are their words terms
    total2, sentiment2, issues2, volume2, positive2, terms2 = await digest_numbers(world.db)
    assert (total2, sentiment2, issues2, volume2) == (total, sentiment, issues, volume)
    assert positive2 and not any("zqx" in p or "erased" in p for p in positive2)
    assert not any("zqx" in t or "erased" in t for t in terms2)

    again = await erasure.erase(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="repeat")
    assert again == Counter()
    requests = ("audit_events", "erasure_tombstones")  # the record of each request (and the erasures' count)
    assert {k: v for k, v in (await dump(world.db)).items() if k not in requests} == \
        {k: v for k, v in after.items() if k not in requests}


async def test_a_redelivered_or_edited_copy_of_an_erased_post_stays_erased_and_brings_back_no_author(world):
    original = world.post("zqxalpha my account was hacked", author="MariaL", name="Maria Lopez", user_id="id-marial")
    mention_id = await world.ingest(original)
    await erasure.erase(world.db, Subject(platform="x", handle="@MARIAL"), actor="dpo", reason="request")
    edited = world.post("zqxalpha edited", author="MariaL", name="Maria Lopez", user_id="id-marial")
    edited.external_id, edited.edited_at = original.external_id, T0 + timedelta(days=1)
    async with world.db.session() as s:
        results = await ingest_batch(s, [original, edited])
        await s.commit()
    assert [(r.mention_id, r.outcome) for r in results] == [(mention_id, "duplicate")] * 2
    tables = await dump(world.db)
    assert found_in(tables, "zqx") == [] and found_in(tables, "marial") == []


async def test_erasing_an_account_by_handle_leaves_the_same_person_elsewhere_and_recognises_a_repeat(world):
    ids = await populate(world)
    counts = await erasure.erase(world.db, Subject(platform="x", handle="@mariaL"), actor="dpo", reason="request",
                                 secret=SECRET_KEY)
    assert counts["posts"] == 4 and counts["authors"] == 1 and counts["identities"] == 1
    async with world.db.session() as s:
        question = await s.get(Mention, ids["question"])
        assert question.text.startswith("zqxepsilon")  # her Discourse account was not named
        assert (await s.get(Customer, ids["maria"])).email == "maria.lopez@example.com"
        case = await s.get(Case, ids["case"])
        assert case.customer_id is None  # her X case no longer points to her record
    tables = await dump(world.db)
    assert found_in(tables, "zqxalpha") == [] and found_in(tables, "id-marial") == []
    again = await erasure.erase(world.db, Subject(platform="x", user_id="id-marial"), actor="dpo", reason="again",
                                secret=SECRET_KEY)
    assert again == Counter()
    with pytest.raises(UnknownSubject):  # without the key nothing on record shows it was ever here
        await erasure.erase(world.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="again")


async def test_a_dry_run_changes_nothing_and_counts_what_the_erasure_then_changes(world):
    ids = await populate(world)
    before = await dump(world.db)
    planned = await erasure.erase(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="r", dry_run=True)
    assert await dump(world.db) == before
    assert planned == await erasure.erase(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="r")


async def test_an_unknown_subject_is_an_error_that_changes_nothing_but_its_tombstone(world):
    """Nothing on record: an error, and nothing changes but, for an account named, its tombstone
    (its first post may be on its way to ingest) and the audit entry that says so."""
    await populate(world)
    before = await dump(world.db)
    for subject in (Subject(customer_id=999), Subject(platform="x", handle="nobody"),
                    Subject(platform="reddit", handle="MariaL"), Subject(platform="x", user_id="zz404zz")):
        with pytest.raises(UnknownSubject):
            await erasure.erase(world.db, subject, actor="dpo", reason="asked by nobody", secret=SECRET_KEY,
                                dry_run=subject.handle == "MariaL")  # a dry run: nothing at all
        if subject.customer_id:
            assert await dump(world.db) == before
    after = await dump(world.db)
    assert {k: v for k, v in after.items() if k not in ("audit_events", "erasure_tombstones")} == \
        {k: v for k, v in before.items() if k not in ("audit_events", "erasure_tombstones")}
    assert len(after["erasure_tombstones"]) == len(before["erasure_tombstones"]) + 2
    assert found_in(after, "zz404zz") == [] and found_in({"t": after["erasure_tombstones"]}, "nobody") == []
    async with world.db.session() as s:
        events = (await s.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.tombstoned")
                                  .order_by(AuditEvent.id))).all()
    assert [(e.details["mode"], e.reason, e.details["tombstones"]) for e in events] == \
        [("handle", "asked by [subject]", 1), ("user_id", "asked by nobody", 1)]


def _output(words: list[str]) -> TriageOutput:
    def score(label: str) -> Score:
        return Score(label, 0.9, "m", "1", {label: 0.9}, [f"'{w}'" for w in words])
    return TriageOutput(sentiment=score("negative"), sensitivity=score("none"), issue_type=score("billing"),
                        toxicity=score("not_offensive"), spam=score("ham"), pii=[PiiSpan("email", 0, 5)],
                        pii_exposed=False, language="en", priority=40.0, priority_explanation=[words[0]],
                        redacted_text="")


async def test_triage_that_read_a_post_before_its_erasure_does_not_write_its_words_back(world):
    nm = world.post("zqxomega charged twice", author="MariaL", name="Maria Lopez", user_id="id-marial")
    async with world.db.session() as s:
        [res] = await ingest_batch(s, [nm])
        await s.commit()

    class ErasedMeanwhile:  # the erasure commits while the models score the text they read
        model_version = "test"

        async def score_batch(self, items):
            await erasure.erase(world.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="r")
            return [_output(i.text.split()) for i in items]

    stage = TriageStage(StageContext(settings=world.settings, db=world.db, triager=ErasedMeanwhile()))
    out = await stage.handle([Envelope(id="1", topic="triage", key="m:1", payload={"mention_id": res.mention_id})])
    assert out == []  # not routed
    async with world.db.session() as s:
        tri = await s.scalar(select(TriageResult).where(TriageResult.mention_id == res.mention_id))
    assert tri.issue_type == "billing" and tri.scores["issue_type"]["explanation"] == [] and tri.scores["pii"] == []
    assert found_in(await dump(world.db), "zqxomega") == []


async def test_act_on_a_decision_made_before_the_erasure_sends_nothing_and_keeps_no_words(db, tmp_path):
    x = FakeConnector("x")
    w = World(db, settings_for(tmp_path, db.url, dry_run=False), {"x": x})
    mid = await w.ingest(w.post("zqxreset how do I reset my password", author="MariaL", name="Maria Lopez",
                                user_id="id-marial"), issue="account_access")
    await w.route.handle([Envelope(id="1", topic="route", key=f"m:{mid}", payload={"mention_id": mid})])
    await erasure.erase(db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="r")
    await w.act.handle([Envelope(id="1", topic="act", key=f"m:{mid}", payload={"mention_id": mid})])
    assert [a.kind for a in x.calls if a.kind in ("public_reply", "private_message")] == []
    async with db.session() as s:
        assert all(r.status == "deleted" and r.text == ERASED_TEXT
                   for r in await s.scalars(select(Reply).where(Reply.mention_id == mid)))
    tables = await dump(db)
    assert found_in(tables, "zqx") == [] and found_in(tables, "maria") == []


# --- retention ------------------------------------------------------------------------------------
async def test_the_purge_keeps_to_its_cutoff_open_cases_and_pending_deliveries(world):
    cutoff = utcnow().replace(microsecond=0) - timedelta(days=30)
    second = timedelta(seconds=1)
    w = world
    old = await w.ingest(w.post("zqxold ann's old post", author="ann", at=cutoff - second), sentiment="negative")
    ben_old = await w.ingest(w.post("zqxbenold", author="ben", at=cutoff - second))
    ben_new = await w.ingest(w.post("keptbennew", author="ben", at=cutoff + second))
    cara = await w.ingest(w.post("keptcara hacked", author="cara", at=cutoff - timedelta(days=3)),
                          sensitivity="security")
    dan = await w.ingest(w.post("zqxdan hacked", author="dan", at=cutoff - timedelta(days=3)), sensitivity="security")
    eve = await w.ingest(w.post("keptevecase hacked", author="eve", at=cutoff + second), sensitivity="security")
    await w.run(cara, dan, eve)
    async with w.db.session() as s:
        await s.execute(update(Author).values(created_at=cutoff - timedelta(days=60)))  # seen long ago
        cases = {c.opened_by_mention_id: c for c in await s.scalars(select(Case))}
        for mid, resolved_at in ((dan, cutoff - second), (eve, cutoff + second)):  # cara's stays open
            cases[mid].status, cases[mid].resolved_at = "resolved", resolved_at
        await chat.post(s, cases[cara], "customer", "keptcarachat")
        sub = WebhookSubscription(name="b", url="http://127.0.0.1:9/", secret="s", created_by="a", events=[])
        s.add(sub)
        await s.flush()
        for n, (status, at) in enumerate((("delivered", cutoff - second), ("pending", cutoff - second),
                                          ("delivered", cutoff + second))):
            s.add(WebhookDelivery(subscription_id=sub.id, event_id=f"e{n}", event_type="mention.triaged",
                                  payload={"data": {"mention_id": ben_new, "text": "keptbennew"}}, status=status,
                                  created_at=at))
        await s.commit()
    before = await dump(w.db)
    seen: list[int] = []
    planned = await retention.purge(w.db, cutoff, dry_run=True, batch_size=1, progress=seen.append)
    assert await dump(w.db) == before and sum(seen) == sum((await retention.purge_plan(w.db, cutoff)).values())

    counts = await retention.purge(w.db, cutoff, actor="cron", batch_size=1)
    assert counts == planned
    assert counts["posts"] == 3 and counts["webhook_deliveries_deleted"] == 1 and counts["authors"] == 2
    tables = await dump(w.db)
    assert found_in(tables, "zqx") == []
    for kept in ("keptbennew", "keptcara", "keptcarachat", "keptevecase", "'ben'", "'cara'", "'eve'"):
        assert found_in(tables, kept), kept
    async with w.db.session() as s:
        texts = dict((await s.execute(select(Mention.id, Mention.text))).all())
        assert texts[old] == texts[ben_old] == texts[dan] == ERASED_TEXT
        assert await s.scalar(select(func.count()).select_from(TriageResult)) == 6  # labels kept for digests
        assert (await s.scalar(select(TriageResult).where(TriageResult.mention_id == old))).sentiment == "negative"
        handles = set(await s.scalars(select(Author.handle)))
        assert handles == {"ben", "cara", "eve", None}  # ann and dan: nothing newer, no open case
        messages = {c: [m.body for m in await s.scalars(select(CaseMessage).where(CaseMessage.case_id == c.id))]
                    for c in cases.values()}
        assert all(b == ERASED_TEXT for b in messages[cases[dan]])
        assert ERASED_TEXT not in messages[cases[cara]] + messages[cases[eve]]
        assert sorted(await s.scalars(select(WebhookDelivery.event_id))) == ["e1", "e2"]
        events = list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.purged")))
        assert [(e.actor, e.details["counts"]) for e in events] == [("cron", dict(counts))]
    assert await retention.purge(w.db, cutoff) == Counter()


async def test_the_purge_anonymises_an_author_seen_only_through_old_posts(world):
    """A backfill (or a replay of old traffic): the author row is new, every post of theirs is older
    than the cutoff; once those are purged their handle and name must not stay."""
    w = world
    cutoff = utcnow() - timedelta(days=30)
    await w.ingest(w.post("zqxold billing complaint", author="olga_old", name="Olga Old", at=cutoff - timedelta(days=10)))
    await w.ingest(w.post("tomword fresh", author="tom_b"))
    counts = await retention.purge(w.db, cutoff)
    assert counts["authors"] == 1
    tables = await dump(w.db)
    assert found_in(tables, "olga") == [] and found_in(tables, "zqxold") == []
    assert found_in(tables, "tom_b")


async def test_the_web_process_purges_at_start_and_then_every_interval(tmp_path, sqlite_url, monkeypatch):
    from aiohttp.test_utils import TestClient, TestServer

    from console.app import create_app
    from service.runtime import Runtime

    async def purges(retention_days):
        rt = await Runtime.open(settings_for(tmp_path, sqlite_url, retention_days=retention_days), stages=[],
                                with_connectors=False, triager=object())
        client = TestClient(TestServer(create_app(rt)))
        await client.start_server()
        try:
            for _ in range(200):
                async with rt.db.session() as s:
                    n = await s.scalar(select(func.count()).select_from(AuditEvent).where(
                        AuditEvent.action == "privacy.purged"))
                if n >= 2 or retention_days is None:
                    break
                await __import__("asyncio").sleep(0.05)
            return n
        finally:
            await client.close()
            await rt.close()

    monkeypatch.setattr(retention, "PURGE_INTERVAL_S", 0.05)
    assert await purges(None) == 0
    assert await purges(30) >= 2
