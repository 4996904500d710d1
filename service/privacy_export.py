"""One person's data on request (GDPR art. 15, the right of access): everything the service holds
about them as one JSON document, the counterpart of :mod:`service.erasure` (the person is named
the same ways and found by the same :func:`~service.privacy_subject.find_subject`).

The document holds their platform accounts (authors) and the identities linked to a customer
record, the customer record(s), their posts with each post's platform payload (``raw``), triage
(labels, explanations and PII spans: their own words) and routing decision, the brand's replies to
those posts and the moderation actions taken on them, the copies of their posts kept as community
answers, the outgoing webhook deliveries about their posts and cases (payload and delivery state),
their cases with the messages, the brand's private replies, the secure links issued (metadata only:
never a token, nor its hash) and the customer sessions they started (with a customer record, also
the cases of someone else's account where a session verified as them: ``verified_session``, with
their sessions only, and the chat only when no other visitor verified there), the audit entries about any
of these (who viewed their record, when and why), and, given the bus, their dead letters (found as
the erasure finds them, :mod:`service.privacy_bus`).

Never other people's data: posts are selected by author, replies by the person's posts and cases
(replies in the same thread to other customers are not theirs), a case message quoting someone
else's post is left out, a secure link in any text is masked, a platform payload loses the fields
that name other accounts (:data:`OTHER_ACCOUNTS`), a community answer shows only the half the person
wrote. What is deliberately left out is listed in the document itself (``not_included``: what and
why), so the person reading it knows; so is a bus that was not checked.

Large histories are read in batches of ``CHUNK`` ids per ``IN`` query, so a person's thousands of
posts take a handful of statements. A person erased before exports as what remains: the
``[erased]`` marker and the audit entries (``erased`` true), not an error. The export is itself
audited (``privacy.exported``: the actor, the reason without the person's names, ids and counts,
never the content), committed before the document is handed out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from escalation.links import shown_without_links
from models import (
    AuditEvent,
    Author,
    Case,
    CaseMessage,
    CommunityAnswer,
    Conversation,
    Customer,
    CustomerSession,
    Mention,
    ModerationAction,
    Reply,
    RouteDecision,
    SecureLink,
    SocialIdentity,
    TriageResult,
)
from models.base import utcnow
from models.console import WebhookDelivery
from models.mentions import ERASED_TEXT
from service import privacy_bus
from service.audit import record
from service.bus import DeadLetter
from service.privacy import chunks, delivered, erased, reshaped
from service.privacy_export_schema import (  # noqa: F401 (json_default: callers name it from here)
    ACTION_FIELDS,
    ANSWER_FIELDS,
    AUDIT_FIELDS,
    AUTHOR_FIELDS,
    BUS_NOT_CHECKED,
    CASE_FIELDS,
    CONVERSATION_FIELDS,
    CUSTOMER_FIELDS,
    DEAD_LETTER_FIELDS,
    DELIVERY_FIELDS,
    IDENTITY_FIELDS,
    LINK_FIELDS,
    MESSAGE_FIELDS,
    NOT_INCLUDED,
    POST_FIELDS,
    REPLY_FIELDS,
    ROUTE_FIELDS,
    SESSION_FIELDS,
    TRIAGE_FIELDS,
    fields,
    json_default,
)
from service.privacy_payloads import OTHER_ACCOUNTS
from service.privacy_subject import Found, Subject, UnknownSubject, find_subject, named_only, without

SCHEMA_VERSION = 1
ACTION = "privacy.exported"
SUBJECT_ACTIONS = ("privacy.erased", ACTION)  # found by the subject's keyed hashes once nothing else names them
LISTED = "deadletter.payload_viewed"  # `deadletter list --show-payload`: many dead letters, named in details["ids"]

async def _in(session: AsyncSession, model: Any, column: Any, ids: Iterable[Any], *order: Any) -> list[Any]:
    """The rows of ``model`` whose ``column`` is among ``ids``: one IN query per ``CHUNK`` ids."""
    rows: list[Any] = []
    for part in chunks(ids):
        rows += (await session.scalars(select(model).where(column.in_(part)).order_by(*order))).all()
    return rows


def _grouped(rows: Iterable[Any], key: str) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for row in rows:
        out.setdefault(getattr(row, key), []).append(row)
    return out


def own(value: Any) -> Any:
    """A payload as the person may see it: without the keys that name other accounts
    (:data:`OTHER_ACCOUNTS`, at any depth), every secure link in its texts masked."""
    return reshaped(value, shown_without_links, OTHER_ACCOUNTS)


def _reply(r: Reply) -> dict[str, Any]:
    return fields(r, REPLY_FIELDS) | {"text": shown_without_links(r.text or "")}


async def _customers(session: AsyncSession, found: Found, authors: list[Author],
                     identities: list[SocialIdentity]) -> list[Customer]:
    """The record named (``--customer``), or the records the named account is linked to."""
    if found.customer is not None:
        return [found.customer]
    ids = found.customer_ids | {a.customer_id for a in authors if a.customer_id} | \
        {i.customer_id for i in identities if i.customer_id}
    return await _in(session, Customer, Customer.id, ids, Customer.id) if ids else []


async def _posts(session: AsyncSession, author_ids: set[int], counts: Counter) -> tuple[list[dict], set[int]]:
    """Their posts, each with its triage, routing, the brand's replies and the moderation actions."""
    mention_ids: list[int] = []
    for part in chunks(author_ids):
        mention_ids += (await session.scalars(select(Mention.id).where(Mention.author_id.in_(part)))).all()
    posts: list[dict] = []
    for part in chunks(mention_ids):
        triage = {t.mention_id: t for t in await _in(session, TriageResult, TriageResult.mention_id, part)}
        routes = {d.mention_id: d for d in await _in(session, RouteDecision, RouteDecision.mention_id, part)}
        replies = _grouped(await _in(session, Reply, Reply.mention_id, part, Reply.created_at, Reply.id), "mention_id")
        actions = _grouped(await _in(session, ModerationAction, ModerationAction.mention_id, part,
                                     ModerationAction.created_at, ModerationAction.id), "mention_id")
        for m in await _in(session, Mention, Mention.id, part):
            t, d = triage.get(m.id), routes.get(m.id)
            posts.append(fields(m, POST_FIELDS) | {
                "text": shown_without_links(m.text) if m.text else m.text,  # as quoted in raw: masked too
                "erased": erased(m),
                "raw": own(m.raw or {}),
                "triage": fields(t, TRIAGE_FIELDS) if t else None,
                "routing": fields(d, ROUTE_FIELDS) if d else None,
                "replies": [_reply(r) for r in replies.get(m.id, [])],
                "moderation_actions": [fields(a, ACTION_FIELDS) for a in actions.get(m.id, [])]})
            counts["replies"] += len(replies.get(m.id, []))
            counts["moderation_actions"] += len(actions.get(m.id, []))
    posts.sort(key=lambda p: (p["created_at"], p["id"]))
    counts["posts"] = len(posts)
    return posts, set(mention_ids)


async def _cases(session: AsyncSession, found: Found, mine: set[int], counts: Counter) -> list[dict]:
    """Their cases: messages (not another person's quoted post), the brand's replies not already
    under a post, secure links (metadata) and the sessions the links started. With ``--customer``
    also the cases a session verified as the record on (``verified_session``), someone else's
    account's: only the sessions that verified as them and the links those used, and the chat when
    no other visitor verified there (see :func:`service.privacy_subject.verified_cases`)."""
    where = [Case.author_id.in_(found.author_ids)] if found.author_ids else []
    if found.customer is not None:
        where.append(Case.customer_id == found.customer.id)
    if found.verified_case_ids:
        where.append(Case.id.in_(found.verified_case_ids))
    if not where:
        return []
    cases = (await session.scalars(select(Case).where(or_(*where)).order_by(Case.created_at, Case.id))).all()
    theirs = {c.id for c in cases if c.author_id in found.author_ids or (
        found.customer is not None and c.customer_id == found.customer.id)}
    chat = theirs | found.chat_case_ids
    ids = [c.id for c in cases]
    messages = _grouped([m for m in await _in(session, CaseMessage, CaseMessage.case_id, ids,
                                              CaseMessage.created_at, CaseMessage.id)
                         if m.case_id in chat and (m.mention_id is None or m.mention_id in mine)], "case_id")
    replies = _grouped([r for r in await _in(session, Reply, Reply.case_id, ids, Reply.created_at, Reply.id)
                        if r.case_id in chat and r.mention_id is None], "case_id")  # else under the post
    sessions = _grouped([s for s in await _in(session, CustomerSession, CustomerSession.case_id, ids,
                                              CustomerSession.created_at, CustomerSession.id)
                         if s.case_id in theirs or (found.customer and s.customer_id == found.customer.id)], "case_id")
    used = {s.link_id for rows in sessions.values() for s in rows}
    links = _grouped([link for link in await _in(session, SecureLink, SecureLink.case_id, ids, SecureLink.created_at,
                                                 SecureLink.id) if link.case_id in theirs or link.id in used], "case_id")
    out = []
    for c in cases:
        out.append(fields(c, CASE_FIELDS) | {
            "verified_session": c.id not in theirs,
            "messages": [fields(m, MESSAGE_FIELDS) | {"body": shown_without_links(m.body or "")}
                         for m in messages.get(c.id, [])],
            "replies": [_reply(r) for r in replies.get(c.id, [])],
            "secure_links": [fields(link, LINK_FIELDS) for link in links.get(c.id, [])],
            "sessions": [fields(s, SESSION_FIELDS) for s in sessions.get(c.id, [])]})
        counts["case_messages"] += len(messages.get(c.id, []))
        counts["replies"] += len(replies.get(c.id, []))
        counts["secure_links"] += len(links.get(c.id, []))
    counts["cases"] = len(out)
    return out


async def _community(session: AsyncSession, mine: set[int], counts: Counter) -> list[dict]:
    """The community answers that copy one of their posts, as question or answer: their half only."""
    rows: dict[int, CommunityAnswer] = {}
    for part in chunks(mine):
        for c in await session.scalars(select(CommunityAnswer).where(or_(
                CommunityAnswer.question_mention_id.in_(part), CommunityAnswer.answer_mention_id.in_(part)))):
            rows[c.id] = c
    out = []
    for c in sorted(rows.values(), key=lambda c: (c.created_at, c.id)):
        asked, answered = c.question_mention_id in mine, c.answer_mention_id in mine
        out.append(fields(c, ANSWER_FIELDS) | {
            "their_part": [part for part, theirs in (("question", asked), ("answer", answered)) if theirs],
            "question_mention_id": c.question_mention_id if asked else None,
            "question": own(c.question) if asked else None,
            "answer_mention_id": c.answer_mention_id if answered else None,
            "external_id": c.external_id if answered else None,  # the answer's id on its platform
            "answer": own(c.answer) if answered else None,
            "url": c.url if answered else None})
    counts["community_answers"] = len(out)
    return out


async def _deliveries(session: AsyncSession, mine: set[int], case_ids: set[int], counts: Counter) -> list[dict]:
    """The outgoing webhook deliveries about their posts and cases: what was sent (or is to be), when."""
    rows: dict[int, WebhookDelivery] = {}
    for key, ids in (("mention_id", mine), ("case_id", case_ids)):
        for part in chunks(ids):
            for d in await session.scalars(select(WebhookDelivery).where(delivered(key).in_(part))):
                rows[d.id] = d
    out = [fields(d, DELIVERY_FIELDS) | {"payload": own(d.payload or {})}
           for d in sorted(rows.values(), key=lambda d: (d.created_at, d.id))]
    counts["webhook_deliveries"] = len(out)
    return out


def _dead_letters(letters: list[DeadLetter], counts: Counter) -> list[dict]:
    out = [fields(d, DEAD_LETTER_FIELDS) | {"payload": own(d.payload)}
           for d in sorted(letters, key=lambda d: (d.failed_at or "", d.id))]
    counts["dead_letters"] = len(out)
    return out


async def _audit(session: AsyncSession, found: Found, objects: dict[str, set[Any]],
                 verified_only: set[int]) -> list[dict]:
    """The audit entries about the person's record, accounts, posts, cases, replies and moderation
    actions, their earlier erasures and exports (matched by keyed hash once nothing else names them),
    and the CLI's listings that showed their dead letters' payloads (one entry names many)."""
    events: dict[int, AuditEvent] = {}
    for object_type, ids in objects.items():
        for part in chunks(str(i) for i in ids):
            for e in await session.scalars(select(AuditEvent).where(
                    and_(AuditEvent.object_type == object_type, AuditEvent.object_id.in_(part)))):
                events[e.id] = e
    if objects.get("deadletter"):
        for e in await session.scalars(select(AuditEvent).where(
                AuditEvent.action == LISTED, AuditEvent.object_id.is_(None))):
            if objects["deadletter"] & set((e.details or {}).get("ids") or []):
                events[e.id] = e
    if found.keys:
        for e in await session.scalars(select(AuditEvent).where(AuditEvent.action.in_(SUBJECT_ACTIONS))):
            if found.keys & set((e.details or {}).get("subject_keys") or []):
                events[e.id] = e
    return [_theirs(fields(e, AUDIT_FIELDS), objects.get("deadletter") or set())
            for e in sorted(events.values(), key=lambda e: (e.at, e.id)) if _about_them(e, found, verified_only)]


def _about_them(e: AuditEvent, found: Found, verified_only: set[int]) -> bool:
    """On a case included only because a session verified as the customer (someone else's account's):
    the entries naming their record, and, where the chat is theirs, those naming no record at all."""
    if e.object_type != "case" or found.customer is None or e.object_id not in {str(i) for i in verified_only}:
        return True
    named = (e.details or {}).get("customer_id")
    return named == found.customer.id or (named is None and int(e.object_id) in found.chat_case_ids)


def _theirs(entry: dict[str, Any], letters: set[Any]) -> dict[str, Any]:
    """A listing's entry names up to 1,000 dead letters, most of them other people's: theirs only."""
    if entry.get("action") != LISTED or not isinstance(entry.get("details"), dict):
        return entry
    mine = sorted(letters & set(entry["details"].get("ids") or []))
    return {**entry, "details": {"ids": mine, "count": len(mine)}}


def _described(subject: Subject) -> dict[str, Any]:
    mode = "customer" if subject.customer_id is not None else "handle" if subject.handle else "user_id"
    return {"mode": mode, "platform": subject.platform, "handle": subject.handle, "user_id": subject.user_id,
            "customer_id": subject.customer_id}


async def _found(session: AsyncSession, subject: Subject, secret: str | None, bus: Any) -> tuple[Found, list | None]:
    """Who the subject is on record (their dead letters are read after their posts); with ``bus``,
    an account with nothing on record but dead letters, found as the erasure finds it, with those."""
    try:
        return await find_subject(session, subject, secret), None
    except UnknownSubject:
        if bus is None:
            raise
        found = named_only(subject, secret)
        letters = await privacy_bus.of_person(bus, await privacy_bus.person(session, found.accounts, []))
        if not letters:
            raise
        return found, letters


async def collect(session: AsyncSession, subject: Subject, secret: str | None = None,
                  bus: Any = None) -> tuple[dict, Found]:
    """The document about ``subject`` (:class:`~service.erasure.UnknownSubject` when nothing is on
    record, nor with ``bus`` in its dead letters) and what :func:`find_subject` found. Without
    ``bus`` the dead letters are not checked, and the document says so."""
    found, letters = await _found(session, subject, secret, bus)
    counts: Counter = Counter()
    authors = await _in(session, Author, Author.id, found.author_ids, Author.id)
    identities = await _in(session, SocialIdentity, SocialIdentity.id, found.identity_ids, SocialIdentity.id)
    customers = await _customers(session, found, authors, identities)
    posts, mine = await _posts(session, found.author_ids, counts)
    conversations = await _in(session, Conversation, Conversation.id,
                              {p["conversation_id"] for p in posts if p["conversation_id"]}, Conversation.id)
    cases = await _cases(session, found, mine, counts)
    answers = await _community(session, mine, counts)
    deliveries = await _deliveries(session, mine, {c["id"] for c in cases if not c["verified_session"]}, counts)
    if bus is not None and letters is None:  # the erasure's match (privacy_bus): their accounts and posts
        letters = await privacy_bus.of_person(bus, await privacy_bus.person(session, found.accounts, mine))
    found.values |= privacy_bus.names(letters or [])  # kept out of the audit entry's reason
    dead = _dead_letters(letters or [], counts) if bus is not None else None
    objects = {"customer": {c.id for c in customers}, "author": found.author_ids, "mention": mine,
               "case": {c["id"] for c in cases},
               "reply": {r["id"] for p in posts for r in p["replies"]} | {r["id"] for c in cases for r in c["replies"]},
               "moderation_action": {a["id"] for p in posts for a in p["moderation_actions"]},
               "deadletter": {d["id"] for d in dead or []}}
    audit = await _audit(session, found, objects, {c["id"] for c in cases if c["verified_session"]})
    counts.update(identities=len(identities), authors=len(authors), customers=len(customers),
                  conversations=len(conversations), audit_events=len(audit))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": utcnow(),
        "subject": _described(subject),
        "erased": found.erased_before or any(c.name == ERASED_TEXT for c in customers),
        "counts": dict(sorted(counts.items())),
        "customers": [fields(c, CUSTOMER_FIELDS) for c in customers],
        "identities": [fields(i, IDENTITY_FIELDS) for i in identities],
        "authors": [fields(a, AUTHOR_FIELDS) for a in authors],
        "posts": posts,
        "conversations": [fields(c, CONVERSATION_FIELDS) for c in conversations],
        "cases": cases,
        "community_answers": answers,
        "webhook_deliveries": deliveries,
        "dead_letters": dead,  # None: not checked (see not_included)
        "audit_events": audit,
        "not_included": [{"what": what, "why": why}
                         for what, why in NOT_INCLUDED + ((BUS_NOT_CHECKED,) if bus is None else ())],
    }
    return doc, found


async def export(db: Any, subject: Subject, *, actor: str, reason: str, secret: str | None = None,
                 bus: Any = None) -> dict:
    """Everything about one person (see the module docstring), with ``bus`` (a started
    :class:`service.bus.Bus`) their dead letters too, with the export audited and committed before
    the document is returned. :class:`~service.erasure.UnknownSubject` when nothing is on record
    (nor on the bus); the bus's :class:`~service.bus.BusUnavailable` exports and records nothing."""
    async with db.session() as session:
        doc, found = await collect(session, subject, secret, bus)
        record(session, actor, ACTION, "customer" if found.customer else "author",
               found.customer.id if found.customer else min(found.author_ids, default=None),
               reason=without(reason, found.values), mode=doc["subject"]["mode"], platform=subject.platform,
               author_ids=sorted(found.author_ids), case_ids=sorted(c["id"] for c in doc["cases"]),
               counts=doc["counts"], erased=doc["erased"], subject_keys=sorted(found.keys),
               dead_letters_checked=bus is not None, schema_version=SCHEMA_VERSION)
        await session.commit()
    return doc
