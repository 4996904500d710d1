"""service.privacy_export on SQLite and PostgreSQL: one person's data on request (the right of access).

The data is made the way the service makes it (ingest, the route and act stages, the case chat, a
moderator's report, a viewed customer record, accepted community answers, the outgoing-webhook
scanner, dead letters on the in-process bus and a real Redis); the export must hold all of the
person's, none of anyone else's, no secure-link token, say what it leaves out, and be audited
without its content.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from privacy_support import (
    SECRET_KEY,
    T0,
    World,
    bury,
    bury_posts,
    scores,
    with_demo_answers,
)
from sqlalchemy import event, select

from community import moderation
from console import webhooks_out
from escalation import chat
from escalation.customers import link_identity
from listener.ingest import ingest_batch
from models import AuditEvent, Case, Customer, Mention, Reply, SecureLink, TriageResult
from models.base import utcnow
from models.console import WEBHOOK_EVENTS, WebhookSubscription
from models.mentions import ERASED_TEXT
from service import erasure
from service.audit import record
from service.erasure import Subject, UnknownSubject
from service.privacy_export import SCHEMA_VERSION, export, json_default

# what Tom and Sam wrote or are called, and what was said about them: never in Maria's export
OTHERS = ("tomword", "tom_b", "tom brown", "tomreport", "tomview", "id-tom_b", "samanswer")


@pytest.fixture
async def world(db, tmp_path):
    return await with_demo_answers(db, tmp_path)


async def populate(w: World) -> dict:
    """Maria (a customer with accounts on X and Discourse) and Tom, who answers in her thread."""
    async with w.db.session() as s:
        maria = Customer(name="Maria Lopez", email="maria.lopez@example.com", phone="+1 555 010 9999",
                         notes="prefers zqxnote", attributes={"tier": "zqxgold"}, external_ref="CRM-77", plan="family")
        tom = Customer(name="Tom Brown", email="tom@example.com", external_ref="CRM-78")
        s.add_all([maria, tom])
        await s.flush()
        await link_identity(s, maria.id, "x", "MariaL", user_id="id-marial")
        await link_identity(s, maria.id, "discourse", "MariaL")
        await link_identity(s, tom.id, "x", "tom_b", user_id="id-tom_b")
        await s.commit()
    ids = {"maria": maria.id, "tom": tom.id}
    # X's payload of her reply to Tom names him (the account replied to, her @-mention of him): his, not hers
    reset = w.post("zqxbeta how do I reset my password", author="MariaL", name="Maria Lopez", user_id="id-marial",
                   raw={"in_reply_to_user_id": "id-tom_b", "lang": "en",
                        "entities": {"mentions": [{"username": "tom_b", "id": "id-tom_b"}],
                                     "hashtags": [{"tag": "zqxtag"}]}})
    ids["reset"] = await w.ingest(reset, issue="account_access")
    ids["praise"] = await w.ingest(w.post("zqxgamma I love the new mixes", author="MariaL", name="Maria Lopez",
                                          user_id="id-marial"), issue="praise", sentiment="positive")
    ids["question"] = await w.ingest(w.post("zqxepsilon how do I turn on crossfade", author="MariaL",
                                            name="Maria Lopez", user_id="id-discourse-maria", platform="discourse"),
                                     issue="how_to")
    # Tom in Maria's thread: his post and the brand's answer to him are his, not hers
    ids["tom_reply"] = await w.ingest(w.post("tomword how do I reset my password too", author="tom_b",
                                             name="Tom Brown", user_id="id-tom_b", in_reply_to=reset.external_id,
                                             conversation_id=reset.external_id), issue="account_access")
    ids["hacked"] = await w.ingest(w.post("zqxalpha someone hacked my account", author="MariaL", name="Maria Lopez",
                                          user_id="id-marial"), issue="account_access", sentiment="negative",
                                   sensitivity="security", pii=True)
    ids["tom_hacked"] = await w.ingest(w.post("tomword2 my account was hacked", author="tom_b", name="Tom Brown",
                                              user_id="id-tom_b"), issue="account_access", sentiment="negative",
                                       sensitivity="security")
    for key in ("reset", "praise", "question", "tom_reply", "hacked", "tom_hacked"):
        await w.run(ids[key])
    async with w.db.session() as s:
        cases = {c.author_id: c for c in await s.scalars(select(Case))}
        mentions = {m.id: m for m in await s.scalars(select(Mention))}
        case = cases[mentions[ids["hacked"]].author_id]
        tom_case = cases[mentions[ids["tom_hacked"]].author_id]
        ids["case"], ids["tom_case"] = case.id, tom_case.id
        await chat.post(s, case, "customer", "zqxchat my card ends 4242")
        await chat.post(s, tom_case, "customer", "tomword3 my card ends 1111")
        await moderation.report(s, mentions[ids["praise"]], "alice", "zqxreport looks like an ad")
        await moderation.report(s, mentions[ids["tom_reply"]], "alice", "tomreport off topic")
        record(s, "alice", "customer.viewed", "customer", maria.id, reason="called about zqxview")
        record(s, "bob", "customer.viewed", "customer", tom.id, reason="called about tomview")
        await s.commit()
    return ids


def as_json(doc: dict) -> str:
    return json.dumps(doc, default=json_default, ensure_ascii=False)


async def exported_events(db) -> list[AuditEvent]:
    async with db.session() as s:
        return list(await s.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.exported")
                                    .order_by(AuditEvent.id)))


async def test_the_export_holds_the_customer_record_accounts_posts_replies_cases_and_who_viewed_them(world):
    ids = await populate(world)
    doc = await export(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="ticket 42",
                       secret=SECRET_KEY)
    assert doc["schema_version"] == SCHEMA_VERSION == 1 and doc["erased"] is False
    assert datetime.fromisoformat(json.loads(as_json(doc))["generated_at"]).tzinfo is not None
    assert doc["subject"] == {"mode": "customer", "platform": None, "handle": None, "user_id": None,
                              "customer_id": ids["maria"]}
    [customer] = doc["customers"]
    assert (customer["name"], customer["email"], customer["phone"], customer["external_ref"], customer["plan"],
            customer["notes"], customer["attributes"]) == ("Maria Lopez", "maria.lopez@example.com", "+1 555 010 9999",
                                                           "CRM-77", "family", "prefers zqxnote", {"tier": "zqxgold"})
    assert sorted((i["platform"], i["handle"]) for i in doc["identities"]) == [("discourse", "MariaL"), ("x", "MariaL")]
    assert sorted((a["platform"], a["handle"], a["display_name"]) for a in doc["authors"]) == \
        [("discourse", "MariaL", "Maria Lopez"), ("x", "MariaL", "Maria Lopez")]

    posts = {p["id"]: p for p in doc["posts"]}
    assert set(posts) == {ids[k] for k in ("reset", "praise", "question", "hacked")}
    assert [p["created_at"] for p in doc["posts"]] == sorted(p["created_at"] for p in doc["posts"])
    hacked = posts[ids["hacked"]]
    assert hacked["text"] == "zqxalpha someone hacked my account" and hacked["platform"] == "x"
    assert hacked["url"].endswith(hacked["external_id"]) and hacked["created_at"] and hacked["ingested_at"]
    assert (hacked["deleted"], hacked["erased"], hacked["edited_at"]) == (False, False, None)
    assert hacked["triage"]["sensitivity"] == "security" and hacked["triage"]["escalate"] is True
    assert hacked["triage"]["scores"]["issue_type"]["explanation"] == ["'zqxalpha'", "'someone'"]
    assert hacked["triage"]["scores"]["pii"] == [{"type": "email", "start": 0, "end": 3}]  # her own data
    assert hacked["routing"]["outcome"] == "escalate_private" and hacked["routing"]["reason"]
    assert {(r["visibility"], r["kind"]) for r in hacked["replies"]} == \
        {("public", "secure_link"), ("private", "secure_link_dm")}
    assert posts[ids["question"]]["routing"]["outcome"] == "community_answer"
    [report] = posts[ids["praise"]]["moderation_actions"]
    assert (report["action"], report["actor"], report["reason"]) == ("hold", "alice", "zqxreport looks like an ad")
    reset = posts[ids["reset"]]
    assert reset["replies"] and all(r["mention_id"] == ids["reset"] for r in reset["replies"])

    [case] = doc["cases"]
    assert case["id"] == ids["case"] and case["category"] == "security" and case["opened_by_mention_id"] == ids["hacked"]
    assert [m["body"] for m in case["messages"]] == ["zqxalpha someone hacked my account", "zqxchat my card ends 4242"]
    [link] = case["secure_links"]
    assert set(link) == {"id", "issued_by", "created_at", "expires_at", "used_at", "revoked_at"}

    audit = doc["audit_events"]
    viewed = [e for e in audit if e["action"] == "customer.viewed"]
    assert [(e["actor"], e["reason"], e["object_id"]) for e in viewed] == \
        [("alice", "called about zqxview", str(ids["maria"]))] and viewed[0]["at"]
    assert {"case.opened", "secure_link.issued", "moderation.hold"} <= {e["action"] for e in audit}
    assert doc["counts"]["posts"] == 4 and doc["counts"]["cases"] == 1 and doc["counts"]["secure_links"] == 1
    assert doc["counts"]["replies"] == sum(len(p["replies"]) for p in doc["posts"]) + len(case["replies"])


async def test_nothing_of_other_customers_is_exported_not_even_from_her_own_thread(world):
    ids = await populate(world)
    doc = await export(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="r", secret=SECRET_KEY)
    text = as_json(doc).lower()
    for value in OTHERS:
        assert value not in text, value
    async with world.db.session() as s:  # the brand did answer Tom in her thread
        to_tom = list(await s.scalars(select(Reply.id).where(Reply.mention_id == ids["tom_reply"])))
    assert to_tom
    replies = {r["id"] for p in doc["posts"] for r in p["replies"]} | {r["id"] for c in doc["cases"] for r in c["replies"]}
    assert replies and not replies & set(to_tom)
    tom_doc = await export(world.db, Subject(platform="x", handle="tom_b"), actor="dpo", reason="r")
    assert "zqx" not in as_json(tom_doc) and "maria" not in as_json(tom_doc).lower()
    assert {p["id"] for p in tom_doc["posts"]} == {ids["tom_reply"], ids["tom_hacked"]}


async def test_no_secure_link_token_nor_its_hash_is_exported(world):
    ids = await populate(world)
    async with world.db.session() as s:
        texts = list(await s.scalars(select(Reply.text)))
        hashes = list(await s.scalars(select(SecureLink.token_hash)))
    tokens = [m.group(1) for t in texts for m in re.finditer(r"/secure/([A-Za-z0-9_-]{40,64})", t)]
    assert tokens and hashes  # the DM waits in the outbox with its link, as before delivery
    text = as_json(await export(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="r"))
    for secret in tokens + hashes:
        assert secret not in text
    assert "/secure/" not in text and "[secure link]" in text


async def test_by_handle_the_named_account_with_its_linked_record_and_the_export_is_audited_without_content(world):
    ids = await populate(world)
    doc = await export(world.db, Subject(platform="x", handle="@mariaL"), actor="dpo",
                       reason="asked by MariaL (Maria Lopez) on ticket 42", secret=SECRET_KEY)
    assert {p["id"] for p in doc["posts"]} == {ids[k] for k in ("reset", "praise", "hacked")}  # not her Discourse post
    assert [c["id"] for c in doc["customers"]] == [ids["maria"]] and [a["platform"] for a in doc["authors"]] == ["x"]
    [event] = await exported_events(world.db)
    assert event.actor == "dpo" and event.object_type == "author" and event.details["mode"] == "handle"
    assert event.details["counts"] == doc["counts"] and event.details["counts"]["posts"] == 3
    assert event.reason == "asked by [subject] ([subject]) on ticket 42"
    stored = repr((event.reason, event.details)).lower()
    for value in ("zqx", "marial", "maria lopez", "maria.lopez@example.com", "555 010", "id-marial"):
        assert value not in stored, value
    again = await export(world.db, Subject(platform="x", user_id="id-marial"), actor="dpo", reason="r2",
                         secret=SECRET_KEY)  # a later export shows who exported before
    assert [(e["actor"], e["action"]) for e in again["audit_events"] if e["action"] == "privacy.exported"] == \
        [("dpo", "privacy.exported")]


async def test_an_unknown_subject_is_an_error_and_records_nothing(world):
    await populate(world)
    for subject in (Subject(platform="x", handle="nobody"), Subject(platform="reddit", handle="MariaL"),
                    Subject(platform="x", user_id="404"), Subject(customer_id=999)):
        with pytest.raises(UnknownSubject):
            await export(world.db, subject, actor="dpo", reason="r", secret=SECRET_KEY)
    assert await exported_events(world.db) == []


async def test_an_erased_person_exports_as_what_remains(world):
    ids = await populate(world)
    await erasure.erase(world.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="gdpr", secret=SECRET_KEY)
    doc = await export(world.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="r", secret=SECRET_KEY)
    assert doc["erased"] is True and doc["posts"] == doc["authors"] == doc["cases"] == []
    assert [e["action"] for e in doc["audit_events"]] == ["privacy.erased"]
    with pytest.raises(UnknownSubject):  # without the key nothing on record shows she was here
        await export(world.db, Subject(platform="x", handle="MariaL"), actor="dpo", reason="r")

    await erasure.erase(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="gdpr", secret=SECRET_KEY)
    doc = await export(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="r", secret=SECRET_KEY)
    [customer] = doc["customers"]
    assert doc["erased"] is True and customer["name"] == ERASED_TEXT and customer["email"] is None
    assert "zqx" not in as_json(doc)
    assert {"privacy.erased", "customer.viewed"} <= {e["action"] for e in doc["audit_events"]}


async def test_an_erased_post_is_exported_as_erased_beside_the_others(world):
    ids = await populate(world)
    async with world.db.session() as s:
        from collections import Counter

        from service.privacy import erase_posts
        await erase_posts(s, [ids["praise"]], Counter())
        await s.commit()
    doc = await export(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="r")
    posts = {p["id"]: p for p in doc["posts"]}
    assert posts[ids["praise"]]["erased"] and posts[ids["praise"]]["text"] == ERASED_TEXT
    assert posts[ids["hacked"]]["erased"] is False and doc["erased"] is False


async def _person_with_posts(w: World, handle: str, n: int) -> None:
    posts = [w.post(f"{handle} post {i} how do I reset my password", author=handle, at=T0 - timedelta(hours=2 * i))
             for i in range(n)]  # hours apart: no spike, no incident, an answer each
    async with w.db.session() as s:
        results = await ingest_batch(s, posts)
        for r in results:
            s.add(TriageResult(mention_id=r.mention_id, model_version="test", sentiment="neutral", sensitivity="none",
                               issue_type="account_access", toxicity="not_offensive", spam="ham", priority=10.0,
                               scores=scores("account_access", "neutral", "none", ["reset"])))
        await s.commit()
    await w.run(*[r.mention_id for r in results])
    async with w.db.session() as s:
        for r in results[:3]:
            await moderation.report(s, await s.get(Mention, r.mention_id), "alice", "check")
        await s.commit()


async def test_a_long_history_takes_a_few_batched_queries_not_one_per_post(world):
    await _person_with_posts(world, "few_posts", 5)
    await _person_with_posts(world, "many_posts", 200)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    async def counted(handle: str) -> tuple[int, dict]:
        statements.clear()
        event.listen(world.db.engine.sync_engine, "before_cursor_execute", seen)
        try:
            doc = await export(world.db, Subject(platform="x", handle=handle), actor="dpo", reason="r")
        finally:
            event.remove(world.db.engine.sync_engine, "before_cursor_execute", seen)
        return len(statements), doc

    few, _ = await counted("few_posts")
    many, doc = await counted("many_posts")
    assert len(doc["posts"]) == 200 and sum(1 for p in doc["posts"] if p["triage"] and p["routing"]) == 200
    assert sum(len(p["replies"]) for p in doc["posts"]) == 200
    assert sum(len(p["moderation_actions"]) for p in doc["posts"]) == 3 and doc["audit_events"]
    assert many == few and many < 30, statements


# --- platform payloads, copies of her posts, outgoing webhooks, dead letters ------------------------
HOOK_URL, HOOK_SECRET = "http://127.0.0.1:9/hook?token=zzhooktoken", "zzsigningsecret"


async def copies(w: World, ids: dict) -> None:
    """Copies of her posts: Sam's accepted answer to her Discourse question, her accepted answer to
    Tom's; and an outgoing webhook subscription's deliveries for every post and case."""
    async with w.db.session() as s:
        question = await s.get(Mention, ids["question"])
        s.add(WebhookSubscription(name="bot", url=HOOK_URL, secret=HOOK_SECRET, created_by="admin",
                                  events=list(WEBHOOK_EVENTS), created_at=T0 - timedelta(days=1)))
        await s.commit()
    tom_question = w.post("tomword4 where is the equalizer", author="tom_b", name="Tom Brown", user_id="id-tom-d",
                          platform="discourse")
    ids["sam_answer"] = await w.ingest(w.post(
        "samanswer: settings, playback, crossfade", author="sam", user_id="id-sam", platform="discourse",
        in_reply_to=question.external_id, conversation_id=question.platform_conversation_id,
        raw={"accepted_answer": True}), issue="how_to")
    ids["tom_question"] = await w.ingest(tom_question, issue="how_to")
    ids["her_answer"] = await w.ingest(w.post(
        "zqxanswer it is under settings, sound", author="MariaL", name="Maria Lopez", user_id="id-discourse-maria",
        platform="discourse", in_reply_to=tom_question.external_id, conversation_id=tom_question.external_id,
        raw={"accepted_answer": True, "reply_to_user": {"username": "tom_b", "name": "Tom Brown"}}), issue="how_to")
    for key in ("sam_answer", "tom_question", "her_answer"):
        await w.run(ids[key])
    assert await webhooks_out.scan(w.db, now=utcnow() + timedelta(minutes=1)) > 0


async def test_the_export_holds_her_posts_payloads_their_community_answer_copies_and_webhook_deliveries(world):
    ids = await populate(world)
    await copies(world, ids)
    doc = await export(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="r", secret=SECRET_KEY)
    text = as_json(doc).lower()
    for value in OTHERS + ("tomword4", "id-tom-d", "zzhooktoken", HOOK_SECRET, HOOK_URL):
        assert value.lower() not in text, value

    posts = {p["id"]: p for p in doc["posts"]}
    raw = posts[ids["reset"]]["raw"]  # what X sent about her post, less the fields naming Tom
    assert raw["text"] == "zqxbeta how do I reset my password" and raw["user"]["screen_name"] == "MariaL"
    assert raw["entities"] == {"hashtags": [{"tag": "zqxtag"}]} and "in_reply_to_user_id" not in raw
    assert posts[ids["her_answer"]]["raw"] == {"accepted_answer": True, "text": "zqxanswer it is under settings, sound",
                                              "user": {"screen_name": "MariaL", "name": "Maria Lopez"}}

    answers = {tuple(a["their_part"]): a for a in doc["community_answers"]}
    assert set(answers) == {("question",), ("answer",)} and doc["counts"]["community_answers"] == 2
    asked = answers[("question",)]  # her question, kept beside Sam's answer: her half only
    assert asked["question"] == "zqxepsilon how do I turn on crossfade" and asked["question_mention_id"] == ids["question"]
    assert (asked["answer"], asked["answer_mention_id"], asked["external_id"], asked["url"]) == (None,) * 4
    answered = answers[("answer",)]  # her answer to Tom's question: not his question
    assert answered["answer"] == "zqxanswer it is under settings, sound" and answered["question"] is None
    assert answered["answer_mention_id"] == ids["her_answer"] and answered["url"] == posts[ids["her_answer"]]["url"]

    deliveries = doc["webhook_deliveries"]
    assert doc["counts"]["webhook_deliveries"] == len(deliveries)
    about = {(d["event_type"], d["payload"]["data"].get("mention_id"), d["payload"]["data"].get("case_id"))
             for d in deliveries}
    mine = {ids[k] for k in ("reset", "praise", "question", "hacked", "her_answer")}
    assert {("mention.triaged", m, None) for m in mine} | {("mention.routed", m, None) for m in mine} | \
        {("case.opened", ids["hacked"], ids["case"])} <= about
    assert {m for _, m, _ in about} <= mine and {c for _, _, c in about} <= {None, ids["case"]}
    triaged = next(d for d in deliveries if d["event_type"] == "mention.triaged"
                   and d["payload"]["data"]["mention_id"] == ids["reset"])
    assert "zqxbeta how do i reset my password" in triaged["payload"]["data"]["text"].lower()
    assert triaged["status"] == "pending"
    hacked = next(d for d in deliveries if d["event_type"] == "mention.triaged"
                  and d["payload"]["data"]["mention_id"] == ids["hacked"])
    assert hacked["payload"]["data"]["text_withheld"] is True  # a takeover report never leaves in a webhook
    assert triaged["subscription_id"] and "url" not in triaged and "secret" not in triaged

    assert doc["dead_letters"] is None  # no bus given: not checked, and the document says so
    notes = " ".join(f"{n['what']}: {n['why']}" for n in doc["not_included"])
    for said in ("dead letters on the message bus", "not checked", "community answer", "outgoing webhooks",
                 "in_reply_to_user_id", "secure links' tokens", "error messages"):
        assert said in notes, said
    [event] = await exported_events(world.db)
    assert event.details["counts"]["webhook_deliveries"] == len(deliveries) and "zqx" not in repr(event.details)


async def test_with_the_bus_her_dead_letters_are_in_the_export_and_nobody_elses(world, make_bus):
    ids = await populate(world)
    bus = await make_bus(max_deliveries=1)
    never = world.post("zqxdead never stored", author="MariaL", name="Maria Lopez", user_id="id-marial",
                       raw={"in_reply_to_user_id": "id-tom_b"})
    await bury_posts(bus, never, world.post("tomword5 dead", author="tom_b", name="Tom Brown", user_id="id-tom_b"))
    for key in ("hacked", "tom_hacked"):  # a later stage's letters name the post by id only
        await bury(bus, "act", f"m:{ids[key]}", {"mention_id": ids[key], "outcome": "escalate_private"})
    doc = await export(world.db, Subject(customer_id=ids["maria"]), actor="dpo", reason="r", secret=SECRET_KEY,
                       bus=bus)
    letters = {d["topic"]: d for d in doc["dead_letters"]}
    assert set(letters) == {"ingest", "act"} and doc["counts"]["dead_letters"] == 2
    post = letters["ingest"]["payload"]["mention"]
    assert (post["text"], post["author_handle"], post["raw"]) == \
        ("zqxdead never stored", "MariaL", {"text": "zqxdead never stored",
                                           "user": {"screen_name": "MariaL", "name": "Maria Lopez"}})
    assert letters["act"]["payload"]["mention_id"] == ids["hacked"] and letters["act"]["failed_at"]
    assert "reason" not in letters["act"] and "broke" not in as_json(doc)  # a batch's error may quote others
    text = as_json(doc).lower()
    for value in OTHERS + ("tomword5",):
        assert value not in text, value
    assert not any("message bus" in n["what"] for n in doc["not_included"])
    [event] = await exported_events(world.db)
    assert event.details["dead_letters_checked"] is True and event.details["counts"]["dead_letters"] == 2
    assert "zqx" not in repr((event.reason, event.details))
    assert len(await bus.dead_letters()) == 4  # read, not removed

    # an account with nothing on record but a dead letter (its post was never stored): that letter
    await bury_posts(bus, world.post("zqxghost first post", author="Ghost", user_id="id-ghost"))
    ghost = await export(world.db, Subject(platform="x", handle="@ghost"), actor="dpo", reason="r", bus=bus)
    assert [d["payload"]["mention"]["text"] for d in ghost["dead_letters"]] == ["zqxghost first post"]
    assert ghost["posts"] == ghost["authors"] == [] and "zqxdead" not in as_json(ghost)
    with pytest.raises(UnknownSubject):
        await export(world.db, Subject(platform="x", handle="nobody"), actor="dpo", reason="r", bus=bus)
